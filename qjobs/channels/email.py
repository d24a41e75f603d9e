"""Email through any SMTP server, with the standard library's smtplib.

One connection serves all the recipients of a job; each recipient gets a message of its
own, whose `Message-ID` derives from the notification id, so a mail client can drop the
copy a crash between the server's acceptance and our record could cause.
"""

import re
import smtplib
import ssl
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from qjobs.channels import DeliveryState, SendResult, next_state

ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
"""A valid e-mail address by the HTML standard's rule (the one browsers apply to
`<input type=email>`): ASCII, no display name, no spaces, no line breaks."""
MAX_ADDRESS_LENGTH = 254
ENCODED_WORD_START = "=?"
"""How an RFC 2047 encoded-word begins. The standard library's header parser decodes one
wherever it finds it, an address's local part included, so text holding this would be
read as something else than it is (CVE-2024-6923: a line break and a header of its own)."""
HEADER_LINE_LENGTH = 76

MESSAGE_POLICY = policy.default.clone(refold_source="none")
"""The modern policy, with headers set raw (`set_raw`) written exactly as given: never
parsed again, so never decoded and re-folded on the way out."""

CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, smtplib.SMTPHeloError, OSError)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool

    def __repr__(self) -> str:
        return f"SmtpServer(host={self.host!r}, port={self.port})"


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://user:pass@host:587?starttls=true` or `smtps://user:pass@host:465`."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must look like smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465")
    implicit_tls = parts.scheme == "smtps"
    options = parse_qs(parts.query)
    starttls = options.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit_tls,
        starttls=starttls and not implicit_tls,
    )


def deliverable_address(value: object) -> str | None:
    """`value` when it is one bare address that can go into `To` and `RCPT TO` as it is;
    None for anything else (a display name, a list, a line break that would add a header,
    a non-ASCII address that needs SMTPUTF8, which servers may lack, or one holding `=?`,
    which a header parser would decode, as an encoded-word, into other addresses or a line
    break: RFC 2047 allows none in an address, and none is seen in practice)."""
    if (
        isinstance(value, str)
        and len(value) <= MAX_ADDRESS_LENGTH
        and ADDRESS.fullmatch(value)
        and ENCODED_WORD_START not in value
    ):
        return value
    return None


@dataclass(frozen=True)
class Email:
    to: str
    """One bare address (`deliverable_address`)."""
    subject: str
    """Untrusted text (names, titles): `literal_header` makes the header of it."""
    text: str
    message_id: str
    html: str | None = None
    """The same content as HTML, sent as the text's alternative, when there is one."""


def build_message(email: Email, sender: str, unsubscribe_url: str | None) -> EmailMessage:
    """The message as sent: `text/plain`, or `multipart/alternative` with the HTML part
    last (the one a client prefers when it can show it). Both parts are quoted-printable
    UTF-8, which any server relays, 8BITMIME or not. The subject is the one header made of
    untrusted text: it is set already encoded (`literal_header`), never parsed."""
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = sender
    message["To"] = email.to
    message.set_raw("Subject", literal_header("Subject", email.subject))
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = email.message_id
    if unsubscribe_url:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message.set_content(email.text, cte="quoted-printable")
    if email.html is not None:
        message.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return message


def literal_header(name: str, text: str) -> str:
    """The value of header `name` that a mail client decodes to exactly `text`, made one
    line: all of it UTF-8 encoded-words, folded to lines of at most 76 characters. Set as
    the policy would (`message[name] = text`), a `=?...?=` in the text is taken for an
    encoded-word and decoded, line breaks included, into the header as sent; encoded here,
    such text is only ever the text it is."""
    line = " ".join("".join(char for char in text if char.isspace() or unicodedata.category(char) != "Cc").split())
    return Header(line, "utf-8", header_name=name).encode(maxlinelen=HEADER_LINE_LENGTH)


class Mailer:
    """Sends messages over one lazily opened connection, classifying each outcome."""

    def __init__(self, server: SmtpServer, sender: str, unsubscribe_url: str | None, timeout: float) -> None:
        self.server = server
        self.sender = sender
        self.unsubscribe_url = unsubscribe_url
        self.timeout = timeout
        self._connection: smtplib.SMTP | None = None

    def send(self, email: Email) -> SendResult:
        message = build_message(email, self.sender, self.unsubscribe_url)
        try:
            connection = self._connect()
            connection.send_message(message, from_addr=self.sender, to_addrs=[email.to])
        except smtplib.SMTPRecipientsRefused as refused:
            (code, _) = next(iter(refused.recipients.values()))
            return classify(code, "recipient refused")
        except smtplib.SMTPSenderRefused as refused:
            return SendResult("retry", f"sender refused ({refused.smtp_code})")
        except smtplib.SMTPResponseException as error:
            return classify(error.smtp_code, "message refused")
        except CONNECTION_ERRORS as error:
            self._connection = None
            return SendResult("retry", f"connection: {type(error).__name__}")
        return SendResult("sent")

    def deliver(self, state: DeliveryState, email: Email) -> DeliveryState:
        """The pending delivery's next state, `email` sent."""
        return next_state(state, self.send(email))

    def _connect(self) -> smtplib.SMTP:
        if self._connection is None:
            self._connection = open_connection(self.server, self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except OSError:  # smtplib.SMTPException is an OSError too
                self._connection.close()
            self._connection = None


@contextmanager
def mailer(server: SmtpServer, sender: str, unsubscribe_url: str | None, timeout: float) -> Iterator[Mailer]:
    session = Mailer(server, sender, unsubscribe_url, timeout)
    try:
        yield session
    finally:
        session.close()


def open_connection(server: SmtpServer, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context()
    connection: smtplib.SMTP
    if server.implicit_tls:
        connection = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    else:
        connection = smtplib.SMTP(server.host, server.port, timeout=timeout)
        if server.starttls:
            connection.starttls(context=context)
    if server.username and server.password:
        connection.login(server.username, server.password)
    return connection


def classify(code: int, what: str) -> SendResult:
    """SMTP's 5xx is permanent (retrying cannot help); 4xx and anything else is worth a retry."""
    if 500 <= code < 600:
        return SendResult("failed", f"{what} ({code})")
    return SendResult("retry", f"{what} ({code})")


def message_id_for(notification_id: str, sender: str) -> str:
    """Deterministic, so that a copy a crash made can be recognised by mail clients."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<{notification_id}@{domain}>"


@dataclass(frozen=True)
class EmailChannel:
    server: SmtpServer
    sender: str
    unsubscribe_url: str | None
    timeout: float
    trip_url_template: str | None = None
    """TRIP_URL_TEMPLATE: where an email links to, `{tripId}` replaced."""

    def session(self) -> AbstractContextManager[Mailer]:
        """One connection for all the emails of a job, opened at the first send (none if
        nothing is sent) and closed at the end, however it ends."""
        return mailer(self.server, self.sender, self.unsubscribe_url, self.timeout)

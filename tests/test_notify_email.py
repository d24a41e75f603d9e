"""The email a collaborator receives, read back from a real SMTP server and parsed part by
part: what it says, that untrusted text stays text, and what it costs in Firestore."""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask.testing import FlaskClient
from google.cloud import firestore

from qjobs.config import ConfigError, load_settings
from qjobs.devtools.emulator import free_port
from qjobs.devtools.rpcs import counting_rpcs
from tests.receivers import Mailbox, SmtpServer, start_smtp
from tests.support import NOTIFY, AppFactory, Deliver, error_of, new_message_id

SENDER = "Trips <notifications@trips.example.test>"
TRIP_URLS = "https://app.example.test/trips/{tripId}"
UNSUBSCRIBE = "https://app.example.test/settings/notifications"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def mail_client(make_client: AppFactory, db: firestore.Client, smtp: SmtpServer) -> FlaskClient:
    db.collection("users").document("maya").set({"displayName": "Maya"})
    db.collection("users").document("ada").set({"displayName": "Ada", "email": "ada@example.test"})
    db.collection("trips").document("trip-1").set({"title": "Lisbon in June"})
    return make_client(
        SMTP_URL=smtp.url, EMAIL_FROM=SENDER, EMAIL_UNSUBSCRIBE_URL=UNSUBSCRIBE, TRIP_URL_TEMPLATE=TRIP_URLS
    )


def payload(**fields: Any) -> dict[str, Any]:
    return {
        "tripId": "trip-1",
        "event": "trip_shared",
        "collaboratorIds": ["maya", "ada"],
        "actorId": "maya",
        "message": "Pack light & bring <sunscreen>\nSee you at the airport",
        **fields,
    }


class Page(HTMLParser):
    """What a person sees of an HTML part (its text) and where its links go."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self.in_body = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_body = self.in_body or tag == "body"
        self.links += [value or "" for name, value in attrs if tag == "a" and name == "href"]

    def handle_data(self, data: str) -> None:
        if self.in_body:
            self.text.append(data)

    def visible(self) -> str:
        """The body's text, whitespace collapsed."""
        return " ".join(" ".join(self.text).split())


def parts(mail: EmailMessage) -> tuple[str, str]:
    """The plain-text and the HTML part of a multipart/alternative message, decoded, with
    the wire's CRLF line ends read as a mail client shows them."""
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()).replace("\r\n", "\n"), str(html.get_content()).replace("\r\n", "\n")


def without_links(text: str) -> str:
    return re.sub(r"https?://\S+", "", text)


def the_one_email(smtp: SmtpServer) -> EmailMessage:
    (mail,) = smtp.mailbox.to("ada@example.test")
    assert len(smtp.mailbox.messages) == 1
    return mail


def test_the_email_names_the_trip_and_who_acted_in_text_and_html(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    message_id = new_message_id()
    response = deliver(NOTIFY, payload(), message_id=message_id, test_client=mail_client)
    assert response.json is not None and response.json["email"] == {"sent": 1, "failed": 0, "skipped": 0}
    mail = the_one_email(smtp)
    assert mail["Subject"] == "Maya shared \u201cLisbon in June\u201d with you"
    plain, html = parts(mail)

    assert plain.startswith("Hi Ada,\n")
    assert "Maya shared \u201cLisbon in June\u201d with you." in plain
    assert "Pack light & bring <sunscreen>\nSee you at the airport" in plain
    assert "https://app.example.test/trips/trip-1" in plain
    assert "a collaborator on \u201cLisbon in June\u201d" in plain and UNSUBSCRIBE in plain

    page = Page(html)
    shown = page.visible()
    assert shown.startswith("Hi Ada,")
    assert "Maya shared \u201cLisbon in June\u201d with you." in shown
    assert "Pack light & bring <sunscreen> See you at the airport" in shown
    assert "a collaborator on \u201cLisbon in June\u201d" in shown
    assert page.links == ["https://app.example.test/trips/trip-1", UNSUBSCRIBE]
    assert "&lt;sunscreen&gt;" in html and "<sunscreen>" not in html

    for readable in (without_links(plain), shown):
        for internal in ("trip-1", "maya", "ada", message_id, "trip_shared", "None"):
            assert internal not in readable


def test_without_a_title_or_names_it_reads_well_and_names_no_one(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    db.collection("trips").document("trip-1").delete()
    db.collection("users").document("ada").set({"email": "ada@example.test"})
    deliver(NOTIFY, payload(event="trip_updated", actorId=None), test_client=mail_client)
    mail = the_one_email(smtp)
    assert mail["Subject"] == "A trip was updated"
    plain, html = parts(mail)
    assert plain.startswith("Hi,\n") and "A trip was updated." in plain and "a collaborator on this trip" in plain
    assert Page(html).visible().startswith("Hi, A trip was updated.")
    assert "None" not in plain and "None" not in html


def test_the_events_own_title_is_used_and_a_deleted_trip_has_no_link(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    """The producer knows the title when the event happens (a deleted trip's document may be
    gone by then): the event's title wins over the trip document's."""
    deliver(NOTIFY, payload(event="trip_deleted", tripTitle="  Porto weekend "), test_client=mail_client)
    mail = the_one_email(smtp)
    assert mail["Subject"] == "Maya deleted \u201cPorto weekend\u201d"
    plain, html = parts(mail)
    assert "trips/" not in plain and Page(html).links == [UNSUBSCRIBE]
    assert "were a collaborator on \u201cPorto weekend\u201d" in plain


def test_each_event_has_its_own_subject(deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer) -> None:
    for event in ("trip_created", "collaborator_added", "collaborator_removed", "collaborator_role_changed"):
        deliver(NOTIFY, payload(event=event), test_client=mail_client)
    assert [str(mail["Subject"]) for mail in smtp.mailbox.messages] == [
        "Maya created \u201cLisbon in June\u201d",
        "Maya added a collaborator to \u201cLisbon in June\u201d",
        "Maya removed a collaborator from \u201cLisbon in June\u201d",
        "Maya changed a collaborator\u2019s role on \u201cLisbon in June\u201d",
    ]


def test_names_and_titles_from_documents_cannot_add_headers_or_markup(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    """The app writes trips and users: a line break in a title or a name must not start a
    header, and markup in them must arrive as text."""
    db.collection("trips").document("trip-1").set({"title": "Lisbon\r\nBcc: eve@example.test"})
    db.collection("users").document("maya").set({"displayName": "<b>Maya</b>\nX-Injected: yes"})
    db.collection("users").document("ada").set(
        {"displayName": "Ada\u2028<script>x()</script>", "email": "ada@example.test"}
    )
    response = deliver(NOTIFY, payload(event="trip_updated"), test_client=mail_client)
    assert response.status_code == 200
    mail = the_one_email(smtp)
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    assert mail["Subject"] == "<b>Maya</b> X-Injected: yes updated \u201cLisbon Bcc: eve@example.test\u201d"
    plain, html = parts(mail)
    assert plain.startswith("Hi Ada <script>x()</script>,\n")
    assert "<script>" not in html and "<b>" not in html and "&lt;script&gt;" in html
    assert Page(html).visible().startswith("Hi Ada <script>x()</script>,")


def test_a_title_with_a_line_break_in_the_payload_is_refused(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    response = deliver(NOTIFY, payload(tripTitle="Lisbon\nBcc: eve@example.test"), test_client=mail_client)
    assert error_of(response)[:2] == (489, "validation_failed")
    assert response.json is not None
    assert [(d["field"], d["code"]) for d in response.json["details"]] == [("tripTitle", "control_characters")]
    assert smtp.mailbox.messages == [] and list(db.collection("notificationEvents").stream()) == []


def test_the_trip_and_the_actor_come_with_the_users_in_the_same_read(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    """Their documents join the batched read of the users: no extra round trip."""
    deliver(NOTIFY, payload(tripId="warm-up"), test_client=mail_client)
    with counting_rpcs() as rpcs:
        response = deliver(NOTIFY, payload(), test_client=mail_client)
    assert response.json is not None and response.json["email"]["sent"] == 1
    assert dict(rpcs.calls) == {"BatchGetDocuments": 2, "Commit": 2}
    assert smtp.mailbox.messages[-1]["Subject"] == "Maya shared \u201cLisbon in June\u201d with you"


@dataclass
class RawMailbox(Mailbox):
    """Also keeps each message's bytes exactly as the server received them."""

    raw: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.raw.append(envelope.original_content or b"")
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def raw_smtp() -> Iterator[SmtpServer]:
    mailbox = RawMailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield SmtpServer(controller, mailbox)
    controller.stop()


def header_lines(raw: bytes) -> list[tuple[str, str]]:
    """The header block of a message as sent: (name, value) per header, each header's
    continuation lines joined to it as a reader unfolds them."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    headers: list[tuple[str, str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            headers[-1] = (headers[-1][0], headers[-1][1] + line)
        else:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    return headers


ACTOR_AS_ENCODED_WORD = "=?utf-8?q?A=0D=0ABcc:_e@x.t?="
TITLE_AS_ENCODED_WORD = "=?utf-8?q?T=0AX-Title-Injected:=20yes?="


def test_text_that_reads_as_an_encoded_word_stays_that_text_in_the_subject(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, raw_smtp: SmtpServer
) -> None:
    """A header value of the form `=?charset?q?...?=` is an RFC 2047 encoded-word, which the
    standard library's own header handling decodes when it writes the header: a name or
    a title holding one must arrive as the characters it is, not as a `Bcc` header or a
    line break inside the subject."""
    db.collection("users").document("maya").set({"displayName": ACTOR_AS_ENCODED_WORD})
    db.collection("users").document("ada").set(
        {"displayName": "=?utf-8?q?Ada=0D=0AX-Name:=20x?=", "email": "ada@example.test"}
    )
    client = make_client(SMTP_URL=raw_smtp.url, EMAIL_FROM=SENDER)
    response = deliver(NOTIFY, payload(tripTitle=TITLE_AS_ENCODED_WORD), test_client=client)
    assert response.status_code == 200 and response.json is not None and response.json["email"]["sent"] == 1
    assert isinstance(raw_smtp.mailbox, RawMailbox)
    (raw,) = raw_smtp.mailbox.raw
    headers = header_lines(raw)
    names = [name for name, _ in headers]
    assert names == ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    decoded = {name: str(make_header(decode_header(value))) for name, value in headers}
    assert not any("\r" in value or "\n" in value for value in decoded.values())
    expected = f"{ACTOR_AS_ENCODED_WORD} shared \u201c{TITLE_AS_ENCODED_WORD}\u201d with you"
    assert decoded["Subject"] == expected
    (mail,) = raw_smtp.mailbox.messages
    assert mail["Subject"] == expected and mail["Bcc"] is None and mail["X-Title-Injected"] is None
    plain, _ = parts(mail)
    assert plain.startswith("Hi =?utf-8?q?Ada=0D=0AX-Name:=20x?=,\n")


@pytest.mark.parametrize(
    "template", ["app.example.test/trips/{tripId}", "https://app.example.test/trips/", "https://a b/{tripId}"]
)
def test_a_trip_url_template_that_cannot_make_links_stops_start_up(template: str) -> None:
    with pytest.raises(ConfigError, match="TRIP_URL_TEMPLATE"):
        load_settings({"QSTASH_CURRENT_SIGNING_KEY": "sig_x", "TRIP_URL_TEMPLATE": template})


# ---------------------------------------------------------------- wording at its edges


def test_without_the_actors_name_the_subject_is_passive_and_names_the_trip(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    db.collection("users").document("maya").set({"email": "maya@example.test"})
    deliver(NOTIFY, payload(event="trip_updated"), test_client=mail_client)
    assert the_one_email(smtp)["Subject"] == "\u201cLisbon in June\u201d was updated"


def test_without_trip_url_template_there_is_no_link(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, smtp: SmtpServer
) -> None:
    db.collection("users").document("ada").set({"displayName": "Ada", "email": "ada@example.test"})
    client = make_client(SMTP_URL=smtp.url, EMAIL_FROM=SENDER)
    deliver(NOTIFY, payload(), test_client=client)
    plain, html = parts(the_one_email(smtp))
    assert "http" not in plain and Page(html).links == []


def test_the_trip_id_goes_into_the_link_as_a_path_segment_takes_it(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    """A safe id's `: @ . _ -` are all allowed in a URL path segment: the link holds it as it is."""
    deliver(NOTIFY, payload(tripId="t:2026@lisbon.june_a-b", tripTitle="Lisbon"), test_client=mail_client)
    plain, html = parts(the_one_email(smtp))
    link = "https://app.example.test/trips/t:2026@lisbon.june_a-b"
    assert link in plain and Page(html).links[0] == link


def test_titles_are_cut_to_80_characters_and_names_to_60(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    """Cut ones end in an ellipsis, within the limit."""
    db.collection("trips").document("trip-1").set({"title": "T" * 81})
    db.collection("users").document("maya").set({"displayName": "M" * 61})
    db.collection("users").document("ada").set({"displayName": "A" * 60, "email": "ada@example.test"})
    deliver(NOTIFY, payload(event="trip_updated"), test_client=mail_client)
    mail = the_one_email(smtp)
    assert mail["Subject"] == "M" * 59 + "\u2026 updated \u201c" + "T" * 79 + "\u2026\u201d"
    assert parts(mail)[0].startswith("Hi " + "A" * 60 + ",\n")


def test_a_title_or_a_name_that_is_not_a_string_is_left_out(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer, db: firestore.Client
) -> None:
    db.collection("trips").document("trip-1").set({"title": 2026})
    db.collection("users").document("maya").set({"displayName": ["Maya"]})
    db.collection("users").document("ada").set({"displayName": {"first": "Ada"}, "email": "ada@example.test"})
    deliver(NOTIFY, payload(event="trip_updated"), test_client=mail_client)
    mail = the_one_email(smtp)
    assert mail["Subject"] == "A trip was updated"
    assert parts(mail)[0].startswith("Hi,\n") and "2026" not in parts(mail)[0]


def test_both_parts_are_quoted_printable_utf8_and_the_message_keeps_its_lines_without_control_characters(
    deliver: Deliver, mail_client: FlaskClient, smtp: SmtpServer
) -> None:
    deliver(NOTIFY, payload(message="Bring\x07 sunscreen\x1b[31m\nand a hat\tplease"), test_client=mail_client)
    mail = the_one_email(smtp)
    plain_part, html_part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain_part is not None and html_part is not None
    for part in (plain_part, html_part):
        assert part["Content-Transfer-Encoding"] == "quoted-printable" and part.get_content_charset() == "utf-8"
    plain, html = parts(mail)
    assert "Bring sunscreen[31m\nand a hat\tplease" in plain
    assert "Bring sunscreen[31m<br>and a hat\tplease" in html
    assert "\x07" not in plain + html and "\x1b" not in plain + html

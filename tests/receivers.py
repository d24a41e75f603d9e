"""Real peers for the delivery channels: an SMTP server (aiosmtpd) and an HTTP receiver,
each on a free local port, recording what they were sent and refusing on demand."""

import asyncio
import ipaddress
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qjobs.devtools.emulator import free_port


@dataclass
class Mailbox:
    """The aiosmtpd handler: accepts mail, or refuses a recipient with the code set for it."""

    messages: list[EmailMessage] = field(default_factory=list)
    """As a mail client reads them (the standard library's modern policy: `get_body`,
    decoded headers)."""
    refuse: dict[str, str] = field(default_factory=dict)
    """address -> SMTP reply, e.g. "450 4.2.1 try later" or "550 5.1.1 no such user"."""
    delay: float = 0
    """Seconds to take over each message, as a slow server would."""
    refuse_times: dict[str, int] = field(default_factory=dict)
    """address -> how many more times to refuse it with 450 (a server that recovers)."""
    connections: set[object] = field(default_factory=set)
    """The client end (address, port) of each connection a message came over."""
    logins: list[tuple[str, str]] = field(default_factory=list)
    """(user, password) of each accepted login."""

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if self.refuse_times.get(address, 0) > 0:
            self.refuse_times[address] -= 1
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        self.connections.add(session.peer)
        content = envelope.original_content or b""
        self.messages.append(BytesParser(policy=policy.default).parsebytes(content))
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]


@dataclass
class SmtpServer:
    controller: Controller
    mailbox: Mailbox

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    def stop(self) -> None:
        self.controller.stop()


def start_smtp() -> SmtpServer:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    return SmtpServer(controller, mailbox)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` and 127.0.0.1 and its key, as PEM files in `folder`;
    a client trusts it when `SSL_CERT_FILE` names the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def start_tls_smtp(mode: str, certificate: tuple[Path, Path], login: tuple[str, str]) -> SmtpServer:
    """An SMTP server that speaks TLS, from the start (`mode="implicit"`, as on port 465) or
    after STARTTLS (`mode="starttls"`, required), and accepts only the login `(user, password)`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    mailbox = Mailbox()

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        given = (data.login.decode(), data.password.decode()) if isinstance(data, LoginPassword) else None
        if given == login:
            mailbox.logins.append(given)
        return AuthResult(success=given == login)

    tls: dict[str, Any] = (
        # aiosmtpd counts only STARTTLS as TLS; its implicit TLS must not hide AUTH as if in the clear.
        {"ssl_context": context, "auth_require_tls": False}
        if mode == "implicit"
        else {"tls_context": context, "require_starttls": True}
    )
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        authenticator=authenticate,
        auth_required=True,
        **tls,
    )
    controller.start()
    return SmtpServer(controller, mailbox)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float = 0.0
    """time.monotonic() when it arrived."""
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    """An HTTP server on a free local port that records every POST (or PUT) and answers it
    with `answer()`: a status, a body and headers."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                recorder.received.append(Received(self.path, headers, body, time.monotonic(), self.command))
                status, content, extra = recorder.answer()
                self.send_response(status)
                for name, value in {**extra, "Content-Length": str(len(content))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        return 204, b"", {}

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver(RecordingServer):
    """A webhook endpoint that answers every POST with `status`."""

    def __init__(self) -> None:
        self.status = 204
        super().__init__()

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        return self.status, b"", {}

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/trips"


class QStashRecorder(RecordingServer):
    """Answers publishes the way QStash does (`{"messageId": ...}`), keeping each request as
    the SDK sent it."""

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        body = json.dumps({"messageId": f"msg_recorded{len(self.received)}"}).encode()
        return 201, body, {"Content-Type": "application/json"}

    @property
    def url(self) -> str:
        return self.origin


class ScriptedReceiver(RecordingServer):
    """A destination that answers from a script (then `204`), optionally slowly, and counts
    how many requests it holds at once."""

    def __init__(self) -> None:
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.hold = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        super().__init__()

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            status, headers = self.script.popleft() if self.script else (204, {})
        time.sleep(self.hold)
        with self._lock:
            self.in_flight -= 1
        return status, b'{"error":"scripted"}' if status >= 400 else b"", headers

    @property
    def url(self) -> str:
        return f"{self.origin}/destination"

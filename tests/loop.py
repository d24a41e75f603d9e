"""The whole loop as one fixture: the local broker (in the test process), an SMTP server, and
the service as a server process with email on, the SDK and the publisher pointed at the
broker. Module-scoped: a module that uses it starts one loop. Delays are scaled by SCALE."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from qstash import QStash
from qstash.message import PublishResponse

from qjobs.devtools.broker import DEV_TOKEN, RunningBroker, start_broker
from qjobs.publish import Publisher
from tests.receivers import SmtpServer, start_smtp
from tests.support import CURRENT_KEY, NEXT_KEY, PROJECT, Server, start_server, wait_until

SCALE = 0.01


@dataclass
class Loop:
    broker: RunningBroker
    server: Server
    smtp: SmtpServer
    qstash: QStash
    publisher: Publisher

    def settled(self, message_id: str) -> bool:
        message = self.broker.broker.messages.get(message_id)
        return message is not None and message.state in ("DELIVERED", "FAILED")

    def wait(self, *message_ids: str) -> None:
        wait_until(lambda: all(self.settled(message_id) for message_id in message_ids), "the broker settled them")

    def starts(self, message_id: str) -> list[float]:
        return [attempt.started for attempt in self.broker.broker.attempts if attempt.message_id == message_id]

    def publish_raw(self, path: str, body: Any, **options: Any) -> str:
        sent = self.qstash.message.publish_json(url=self.server.url + path, body=body, **options)
        assert isinstance(sent, PublishResponse)
        return sent.message_id


@pytest.fixture(scope="module")
def loop(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """The broker (in this process), an SMTP server, and the service as a server process
    with email on; the SDK and the publisher pointed at the broker."""
    smtp = start_smtp()
    broker = start_broker(time_scale=SCALE, environ={"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY})
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("QSTASH", "K_", "PUBLIC_"))},
        "QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY,
        "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMTP_URL": smtp.url,
        "EMAIL_FROM": "Trips <trips@example.test>",
        "LOG_LEVEL": "WARNING",
    }
    server = start_server(env, Path(tmp_path_factory.mktemp("loop")) / "server.log")
    qstash = QStash(DEV_TOKEN, base_url=broker.url, retry=False)
    yield Loop(broker, server, smtp, qstash, Publisher(qstash, server.url))
    server.stop()
    broker.stop()
    smtp.stop()


@pytest.fixture
def mailbox_emptied(loop: Loop) -> None:
    """The SMTP server lives as long as the module: a test that uses it starts with it empty."""
    mailbox = loop.smtp.mailbox
    mailbox.messages.clear()
    mailbox.refuse.clear()
    mailbox.refuse_times.clear()

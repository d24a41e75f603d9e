"""A local QStash-compatible broker for development and tests (`python -m qjobs.devtools.broker`).

In memory: everything it holds is lost when it stops. The official SDKs publish to it
when pointed at it (`QSTASH_URL` / `baseUrl`), and it delivers the way QStash does:
signed attempts, retries with backoff, `Retry-After`, flow control, the dead-letter queue
and failure callbacks.
"""

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.broker.api import serve
from qjobs.devtools.broker.core import Broker

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="  # noqa: S105 - published
"""The token Upstash's own development server accepts, published with it."""


@dataclass
class RunningBroker:
    broker: Broker
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.broker.stop()


def start_broker(
    host: str = "127.0.0.1", port: int = 0, *, time_scale: float = 1.0, environ: Mapping[str, str] | None = None
) -> RunningBroker:
    """A broker serving on host:port (0: a free one) in threads of this process. It accepts
    the published development token and QSTASH_TOKEN, and signs with
    QSTASH_CURRENT_SIGNING_KEY or the published development key."""
    env = os.environ if environ is None else environ
    tokens = frozenset(token for token in (DEV_TOKEN, env.get("QSTASH_TOKEN")) if token)
    broker = Broker(env.get("QSTASH_CURRENT_SIGNING_KEY") or DEV_CURRENT_SIGNING_KEY, time_scale=time_scale)
    server = serve(broker, host, port, tokens)
    broker.start()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="broker-api", daemon=True
    )
    thread.start()
    return RunningBroker(broker, server, thread)

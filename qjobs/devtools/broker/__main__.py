"""`python -m qjobs.devtools.broker`: run the local QStash-compatible broker."""

import argparse
import signal
import sys
import threading
from types import FrameType

from qjobs.devtools.broker import DEV_TOKEN, start_broker

DESCRIPTION = f"""A local QStash-compatible broker, for development and tests.

It keeps everything IN MEMORY: messages, retries and the dead-letter queue are lost when it
stops. Point the official SDKs at it (Python: QSTASH_URL or QStash(token, base_url=...);
JavaScript: new Client({{ baseUrl, token }})). It accepts the published development token
{DEV_TOKEN}
(or QSTASH_TOKEN), and signs deliveries with QSTASH_CURRENT_SIGNING_KEY or Upstash's
published development key. It serves POST /v2/publish/<url>, GET /v2/messages/<id>,
GET /v2/dlq, GET and DELETE /v2/dlq/<dlqId>; anything else answers 501."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qjobs.devtools.broker",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 for a free port (default 8081)")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply every delay by this (0.01: a 10 s retry after 0.1 s)"
    )
    args = parser.parse_args(argv)
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    running = start_broker(args.host, args.port, time_scale=args.time_scale)
    print(f"QStash-compatible broker at {running.url} (in memory)", flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    stopped.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

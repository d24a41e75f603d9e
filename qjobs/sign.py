"""Send a job the way QStash delivers it: `python -m qjobs.sign URL BODY`.

Signs BODY for URL with a QStash signing key (QSTASH_CURRENT_SIGNING_KEY, or Upstash's
published development key), adds a fresh `Upstash-Message-Id`, POSTs it, and prints the
status and the response. BODY may be JSON text, `@file`, or `-` for standard input.
"""

import argparse
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.signature import sign


def read_body(argument: str) -> bytes:
    if argument == "-":
        return sys.stdin.buffer.read()
    if argument.startswith("@"):
        return Path(argument[1:]).read_bytes()
    return argument.encode()


def build_request(
    url: str, body: bytes, *, key: str, message_id: str, retried: int = 0, signed_url: str | None = None
) -> urllib.request.Request:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Upstash-QStash",
        "Upstash-Signature": sign(body, url=signed_url or url, key=key),
        "Upstash-Message-Id": message_id,
        "Upstash-Retried": str(retried),
    }
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def send(request: urllib.request.Request, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m qjobs.sign", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the job's URL, e.g. http://127.0.0.1:8080/api/jobs/memory-sync")
    parser.add_argument("body", help="JSON text, @file, or - for standard input")
    parser.add_argument("--key", default=os.environ.get("QSTASH_CURRENT_SIGNING_KEY") or DEV_CURRENT_SIGNING_KEY)
    parser.add_argument("--message-id", default=None, help="default: a fresh msg_... id")
    parser.add_argument("--retried", type=int, default=0, help="the Upstash-Retried header")
    parser.add_argument("--signed-url", default=None, help="the URL to sign, when not the one sent to")
    parser.add_argument("--timeout", type=float, default=60)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    message_id = args.message_id or f"msg_{uuid.uuid4().hex}"
    request = build_request(
        args.url,
        read_body(args.body),
        key=args.key,
        message_id=message_id,
        retried=args.retried,
        signed_url=args.signed_url,
    )
    status, text = send(request, args.timeout)
    print(f"{status} {message_id}")
    print(text)
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cold start: from starting the server process to the first 200 on a signed job.

What Cloud Run makes a delivery wait for when it starts an instance for it: the
interpreter, the imports (in gunicorn's master), the fork, the worker's first request with
its Firestore client. Polled every 5 ms with the job itself, so the figure includes the
first delivery's own work.
"""

import json
import statistics
import time
import urllib.error
import urllib.request

from bench.service import NOTIFY, App, new_message_id, spawn
from qjobs.cli.send import build_request
from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.emulator import Emulator

PAYLOAD = {"tripId": "cold", "event": "trip_updated", "collaboratorIds": ["u1", "u2"], "message": "Cold start"}


def first_success(app: App, path: str, started: float, timeout: float = 60) -> float:
    """Seconds from `started` until `path` first answered 2xx."""
    body = json.dumps(PAYLOAD).encode()
    message_id = new_message_id()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        request = build_request(app.base + path, body, key=DEV_CURRENT_SIGNING_KEY, message_id=message_id)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if 200 <= response.status < 300:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.005)
    raise RuntimeError(f"no 2xx from {app.base}{path} within {timeout:.0f}s")


def cold_start_seconds(emulator: Emulator, source: str, runs: int = 5) -> float:
    """Median over `runs` fresh processes."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        app = spawn(emulator, source)
        try:
            seconds.append(first_success(app, NOTIFY, started))
        finally:
            app.stop()
    return statistics.median(seconds)

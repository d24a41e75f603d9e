"""Cold start: from starting the server process to the first 200 on a signed job.

What Cloud Run makes a delivery wait for when it starts an instance for it: the
interpreter, the imports (in gunicorn's master), the fork, the worker's first request with
its Firestore client. Polled every 5 ms with the job itself, so the figure includes the
first delivery's own work.

`python -m bench.coldstart [ROUNDS]` measures this figure alone, the service's processes and
the floor's started in turn.
"""

import compileall
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

from bench.service import NOTIFY, ROOT, App, new_message_id, spawn
from qjobs.cli.send import build_request
from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.emulator import Emulator, start_emulator

FLOOR = "bench/apps/cold_floor_main.py"
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
    (seconds,) = side_by_side(emulator, (source,), runs)
    return seconds


def compile_sources() -> None:
    """Bytecode for the service's sources and the floor's, as the image has it (the
    Dockerfile's `compileall`): under PYTHONDONTWRITEBYTECODE each start would otherwise
    compile them again, which no instance does."""
    for path in ("main.py", "handlers", "qjobs", "bench/apps"):
        target = ROOT / path
        if target.is_dir():
            compileall.compile_dir(target, quiet=1)
        else:
            compileall.compile_file(target, quiet=1)


def side_by_side(emulator: Emulator, sources: tuple[str, ...], runs: int = 5) -> list[float]:
    """The median over `runs` fresh processes of each source, started in turn (one of each,
    then again), so that both see the same moments of a busy machine."""
    compile_sources()
    seconds: list[list[float]] = [[] for _ in sources]
    for _ in range(runs):
        for index, source in enumerate(sources):
            started = time.perf_counter()
            app = spawn(emulator, source)
            try:
                seconds[index].append(first_success(app, NOTIFY, started))
            finally:
                app.stop()
    return [statistics.median(each) for each in seconds]


def main(argv: list[str]) -> int:
    """`python -m bench.coldstart [ROUNDS]`: the cold-start figure alone, next to its floor,
    ROUNDS times (each the median of 5 fresh processes of each)."""
    rounds = int(argv[0]) if argv else 3
    emulator = start_emulator()
    try:
        side_by_side(emulator, ("main.py", FLOOR), runs=2)  # unreported: the emulator's JVM warms up
        for _ in range(rounds):
            ours, floor = side_by_side(emulator, ("main.py", FLOOR))
            ratio = ours / floor
            print(f"cold start {ours * 1000:6.0f} ms  floor {floor * 1000:6.0f} ms  ratio {ratio:5.2f}", flush=True)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

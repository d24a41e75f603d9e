"""Starting apps the way production does, sending them signed jobs, and summarising timings."""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qjobs.cli.send import build_request, send
from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.emulator import Emulator, free_port
from qjobs.devtools.run_local import DEV_KEYS

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench-project"
NOTIFY = "/api/jobs/notify-collaborators"
MEMORY = "/api/jobs/memory-sync"


@dataclass
class App:
    process: subprocess.Popen[bytes]
    base: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def app_environment(emulator: Emulator, port: int) -> dict[str, str]:
    """The service's environment as the image sets it (one worker, eight threads)."""
    return {
        **os.environ,
        **DEV_KEYS,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "INFO",  # as in production: every delivery writes its log line
        "WORKERS": "1",
        "THREADS": "8",
    }


def spawn(emulator: Emulator, source: str = "main.py", extra: Mapping[str, str] | None = None) -> App:
    port = free_port()
    env = {**app_environment(emulator, port), **(extra or {})}
    command = [sys.executable, "-m", "functions_framework", "--target=jobs", f"--source={source}", f"--port={port}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return App(process, f"http://127.0.0.1:{port}")


def start(emulator: Emulator, source: str = "main.py", extra: Mapping[str, str] | None = None) -> App:
    app = spawn(emulator, source, extra)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(app.base + "/health", timeout=1):
                return app
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    app.stop()
    raise RuntimeError(f"{source} did not start")


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def deliver(url: str, payload: Mapping[str, object], message_id: str | None = None, retried: int = 0) -> int:
    body = json.dumps(payload).encode()
    message_id = message_id or new_message_id()
    request = build_request(url, body, key=DEV_CURRENT_SIGNING_KEY, message_id=message_id, retried=retried)
    status, _ = send(request, timeout=120)
    return status


def health(base: str) -> int:
    with urllib.request.urlopen(base + "/health", timeout=30) as response:
        return int(response.status)


@dataclass(frozen=True)
class Timings:
    """Latencies of one run of n operations, and the run's wall time."""

    milliseconds: list[float]
    wall_seconds: float

    @property
    def p50(self) -> float:
        return statistics.median(self.milliseconds)

    @property
    def p99(self) -> float:
        ordered = sorted(self.milliseconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def per_second(self) -> float:
        return len(self.milliseconds) / self.wall_seconds


def timed(operation: Callable[[int], object], count: int, concurrency: int = 1) -> Timings:
    """Run operation(0..count-1) with `concurrency` in flight; each call's latency in ms."""

    def one(n: int) -> float:
        started = time.perf_counter()
        operation(n)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    if concurrency == 1:
        milliseconds = [one(n) for n in range(count)]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            milliseconds = list(pool.map(one, range(count)))
    return Timings(milliseconds, time.perf_counter() - started)


def worker_peak_rss_mib(app: App) -> float:
    children = Path(f"/proc/{app.process.pid}/task/{app.process.pid}/children").read_text().split()
    for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

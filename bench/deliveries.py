"""Benchmark: delivery latency and throughput of the real service on the Firestore emulator.

`make bench` prints figures; nothing here asserts. Numbers on the emulator are an upper
bound of the service's own cost (the emulator is slower than Firestore for transactions),
useful to compare one change with the next on the same machine.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.cloud import firestore

from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.emulator import Emulator, free_port, start_emulator
from qjobs.devtools.run_local import DEV_KEYS
from qjobs.sign import build_request, send

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench-project"
SENTENCES = [
    "We want to plan a trip to Lisbon in June.",
    "I'm vegan and I fly out of Boston Logan (BOS).",
    "Keep it under $2,000 for the whole trip. No red-eyes please.",
    "Let's go with the apartment in Alfama. Do we need visas?",
]


def start_service(emulator: Emulator) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **DEV_KEYS,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBLIC_BASE_URL": base,
        "LOG_LEVEL": "WARNING",
        "THREADS": "8",
    }
    command = [sys.executable, "-m", "functions_framework", "--target=jobs", "--source=main.py", f"--port={port}"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                return server, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the service did not start")


def deliver(url: str, payload: Mapping[str, object], message_id: str | None = None) -> tuple[int, float]:
    body = json.dumps(payload).encode()
    request = build_request(url, body, key=DEV_CURRENT_SIGNING_KEY, message_id=message_id or f"msg_{uuid.uuid4().hex}")
    started = time.perf_counter()
    status, _ = send(request, timeout=120)
    return status, (time.perf_counter() - started) * 1000


def report(name: str, results: list[tuple[int, float]], wall_seconds: float) -> None:
    latencies = sorted(ms for _, ms in results)
    statuses = sorted({status for status, _ in results})
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"{name:<34} n={len(results):<4} statuses={statuses} p50={statistics.median(latencies):7.1f} ms "
        f"p95={p95:7.1f} ms max={latencies[-1]:7.1f} ms  {len(results) / wall_seconds:6.1f}/s"
    )


def notify_payload(n: int) -> dict[str, object]:
    return {
        "tripId": f"trip-{n}",
        "event": "trip_updated",
        "collaboratorIds": [f"user-{n}-{k}" for k in range(5)],
        "message": "Dates moved to June",
    }


def bench_notify(base: str) -> None:
    url = base + "/api/jobs/notify-collaborators"
    started = time.perf_counter()
    sequential = [deliver(url, notify_payload(n)) for n in range(100)]
    report("notify, sequential", sequential, time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda n: deliver(url, notify_payload(1000 + n)), range(200)))
    report("notify, 8 in parallel", parallel, time.perf_counter() - started)
    message_id = f"msg_{uuid.uuid4().hex}"
    deliver(url, notify_payload(5000), message_id)
    started = time.perf_counter()
    duplicates = [deliver(url, notify_payload(5000), message_id) for _ in range(100)]
    report("notify, duplicates of one message", duplicates, time.perf_counter() - started)
    started = time.perf_counter()
    big = [
        deliver(url, {**notify_payload(6000 + n), "collaboratorIds": [f"u{k}" for k in range(100)]}) for n in range(20)
    ]
    report("notify, 100 recipients", big, time.perf_counter() - started)


def seed_conversation(db: firestore.Client, conversation_id: str, count: int) -> None:
    db.collection("conversations").document(conversation_id).set(
        {"userId": "bench-user", "createdAt": datetime.now(UTC)}
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, count, 400):
        batch = db.batch()
        for n in range(first, min(first + 400, count)):
            ref = db.collection("conversations", conversation_id, "messages").document(f"m{n:05d}")
            role = "user" if n % 2 == 0 else "assistant"
            batch.set(ref, {"role": role, "content": SENTENCES[n % 4], "createdAt": start + timedelta(seconds=n)})
        batch.commit()


def bench_memory_sync(base: str, emulator: Emulator) -> None:
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    db = firestore.Client(project=PROJECT)
    url = base + "/api/jobs/memory-sync"
    for count in (100, 1000):
        conversation_id = f"bench-{count}"
        seed_conversation(db, conversation_id, count)
        for sync_type in ("incremental", "full"):
            payload = {"userId": "bench-user", "conversationId": conversation_id, "syncType": sync_type}
            status, ms = deliver(url, payload)
            rate = count / ms * 1000
            print(
                f"memory-sync {sync_type:<11} {count:>5} messages  status={status} {ms:8.1f} ms  {rate:7.1f} messages/s"
            )


def worker_peak_rss_mib(server: subprocess.Popen[bytes]) -> float:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    emulator = start_emulator()
    server, base = start_service(emulator)
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Firestore emulator at {emulator.host}")
        bench_notify(base)
        bench_memory_sync(base, emulator)
        print(f"worker peak RSS: {worker_peak_rss_mib(server):.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

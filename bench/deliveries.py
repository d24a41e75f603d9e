"""`make bench`: the service's figures on the Firestore emulator, each next to its floor.

Prints, asserts nothing. Every floor is measured in the same run on the same machine:
- latency: one HTTP round trip to the same server (GET /health) plus the same Firestore
  work done by the client directly (bench/floors.py);
- throughput: a straightforward handler served the same way (bench/apps/straightforward_main.py);
- cold start: a functions-framework app that imports the Firestore client and commits once.
docs/performance.md has the method and the latest table.
"""

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.cloud import firestore

from bench import floors
from bench.coldstart import cold_start_seconds
from bench.rpc_counts import count_all
from bench.service import MEMORY, NOTIFY, PROJECT, App, Timings, deliver, health, start, timed, worker_peak_rss_mib
from qjobs.devtools.emulator import Emulator, start_emulator

SENTENCES = [
    "We want to plan a trip to Lisbon in June.",
    "I'm vegan and I fly out of Boston Logan (BOS).",
    "Keep it under $2,000 for the whole trip. No red-eyes please.",
    "Let's go with the apartment in Alfama. Do we need visas?",
]
SAMPLES = {1: 200, 8: 400}


def notify_payload(n: int, recipients: int = 5) -> dict[str, object]:
    return {
        "tripId": f"trip-{n}",
        "event": "trip_updated",
        "collaboratorIds": [f"user-{n}-{k}" for k in range(recipients)],
        "message": "Dates moved to June",
    }


def row(figure: str, value: float, floor: float | None = None, target: str = "", unit: str = "ms") -> None:
    if floor is None:
        print(f"  {figure:<40} {value:9.1f} {unit}")
        return
    ratio = value / floor if floor else float("nan")
    print(f"  {figure:<40} {value:9.1f} {unit}  floor {floor:8.1f} {unit}  ratio {ratio:5.2f}  {target}")


def compare(name: str, service: Timings, http: Timings, direct: Timings, target: str = "") -> None:
    row(f"{name} p50", service.p50, http.p50 + direct.p50, target)
    row(f"{name} p99", service.p99, http.p99 + direct.p99)


def counter() -> Callable[[], int]:
    state = {"n": 0}

    def next_n() -> int:
        state["n"] += 1
        return state["n"]

    return next_n


def bench_latency(app: App, db: firestore.Client) -> None:
    url = app.base + NOTIFY
    fresh_id = counter()
    timed(lambda n: deliver(url, notify_payload(fresh_id())), 30)
    timed(lambda n: floors.fresh_job(db, 100_000 + n), 30)
    finished = f"msg_bench_{os.getpid()}"
    deliver(url, notify_payload(0), finished)
    floor_entry = floors.finished_entry(db)
    print("latency, notify-collaborators with 5 recipients, inbox only (service vs floor)")
    for concurrency, count in SAMPLES.items():
        http = timed(lambda n: health(app.base), count, concurrency)
        service = timed(lambda n: deliver(url, notify_payload(fresh_id())), count, concurrency)
        direct = timed(lambda n: floors.fresh_job(db, 200_000 + fresh_id()), count, concurrency)
        compare(f"fresh job, {concurrency} in flight", service, http, direct, "target <= 1.3" * (concurrency == 1))
        read = timed(lambda n: floors.duplicate(db, floor_entry), count, concurrency)
        retry = timed(lambda n: deliver(url, notify_payload(0), finished, retried=1), count, concurrency)
        compare(
            f"duplicate (a retry), {concurrency} in flight", retry, http, read, "target <= 1.2" * (concurrency == 1)
        )
        copy = timed(lambda n: deliver(url, notify_payload(0), finished), count, concurrency)
        compare(f"duplicate (a copy), {concurrency} in flight", copy, http, read)


def bench_throughput(service: App, emulator: Emulator) -> None:
    simple = start(emulator, "bench/apps/straightforward_main.py")
    try:
        offset = counter()

        def jobs(app: App, count: int) -> Timings:
            return timed(lambda n: deliver(app.base + NOTIFY, notify_payload(300_000 + offset())), count, 8)

        jobs(service, 40), jobs(simple, 40)
        ours, theirs = jobs(service, 400), jobs(simple, 400)
    finally:
        simple.stop()
    print("throughput, fresh notify-collaborators jobs, 8 in flight (service vs a straightforward handler)")
    print(
        f"  {'jobs/s':<40} {ours.per_second:9.1f}     straightforward {theirs.per_second:6.1f}     "
        f"ratio {ours.per_second / theirs.per_second:5.2f}  target >= 1.0"
    )


def bench_cold_start(emulator: Emulator) -> None:
    ours = cold_start_seconds(emulator, "main.py")
    floor = cold_start_seconds(emulator, "bench/apps/cold_floor_main.py")
    print("cold start, process start to the first 200 on a signed job (median of 5)")
    row("cold start", ours * 1000, floor * 1000, "target <= 1.3")


def bench_rpcs(emulator: Emulator) -> None:
    print("Firestore per delivery (counted in the client library)")
    for count in count_all(emulator):
        calls = ", ".join(f"{name} {n}" for name, n in count.calls.items())
        print(
            f"  {count.case:<40} {count.rpcs:2d} RPCs  {count.read:3d} read  {count.written:3d} written"
            f"  status {count.status}  ({calls})"
        )


def seed_conversation(db: firestore.Client, conversation_id: str, count: int) -> None:
    db.collection("conversations").document(conversation_id).set({"userId": "bench-user"})
    start_at = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, count, 400):
        batch = db.batch()
        for n in range(first, min(first + 400, count)):
            ref = db.collection("conversations", conversation_id, "messages").document(f"m{n:05d}")
            role = "user" if n % 2 == 0 else "assistant"
            batch.set(ref, {"role": role, "content": SENTENCES[n % 4], "createdAt": start_at + timedelta(seconds=n)})
        batch.commit()


def bench_larger_jobs(app: App, db: firestore.Client) -> None:
    print("larger jobs")
    big = timed(lambda n: deliver(app.base + NOTIFY, notify_payload(700_000 + n, recipients=100)), 20)
    row("notify-collaborators, 100 recipients, p50", big.p50)
    for count in (100, 1000):
        conversation_id = f"bench-{count}"
        seed_conversation(db, conversation_id, count)
        for sync_type in ("incremental", "full"):
            payload = {"userId": "bench-user", "conversationId": conversation_id, "syncType": sync_type}
            started = time.perf_counter()
            status = deliver(app.base + MEMORY, payload)
            row(f"memory-sync {sync_type}, {count} messages (status {status})", (time.perf_counter() - started) * 1000)


def main() -> int:
    emulator = start_emulator()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    db = firestore.Client(project=PROJECT)
    app = start(emulator)
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Firestore emulator at {emulator.host}")
        bench_latency(app, db)
        bench_throughput(app, emulator)
        bench_rpcs(emulator)
        bench_larger_jobs(app, db)
        print(f"  {'worker peak RSS':<40} {worker_peak_rss_mib(app):9.0f} MiB")
        bench_cold_start(emulator)
    finally:
        app.stop()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make run` as a newcomer uses it: the emulator, the broker and the service come up, the
commands it prints publish jobs that land in Firestore, and Ctrl-C stops all three."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.cloud import firestore

from qjobs.devtools.emulator import free_port
from qjobs.devtools.run_local import EMULATOR_HOST_FILE, ENV_FILE, LOCAL_PROJECT
from tests.support import ROOT, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    port, broker_port = free_port(), free_port()
    env = {
        **process_environment(),
        "PORT": str(port),
        "BROKER_PORT": str(broker_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "qjobs.devtools.run_local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    yield process, port, broker_port
    if process.poll() is None:  # the test failed half way: stop it as Ctrl-C would, so that it stops its parts
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def process_environment() -> dict[str, str]:
    """This test process's environment without what other tests' fixtures set."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("QSTASH", "FIRESTORE", "GOOGLE"))}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == pid:
                found.append(int(entry.name))
    return found


def test_make_run_serves_publishes_and_stops_everything(make_run: tuple[subprocess.Popen[str], int, int]) -> None:
    process, port, broker_port = make_run
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("Press Ctrl-C" in line for line in printed):
        printed.append(process.stdout.readline())
    text = "".join(printed)
    assert f"Service:   http://127.0.0.1:{port}" in text and f"QStash:    http://127.0.0.1:{broker_port}" in text
    assert "Firestore: emulator at" in text
    children = children_of(process.pid)
    assert len(children) >= 3, "the emulator, the broker and the service"

    exported = dict(line.split("=", 1) for line in (ROOT / ENV_FILE).read_text().splitlines())
    assert exported["FIRESTORE_EMULATOR_HOST"] == (ROOT / EMULATOR_HOST_FILE).read_text().strip()
    operator = {**process_environment(), **exported}

    def command(*argv: str) -> str:
        done = subprocess.run(argv, cwd=ROOT, env=operator, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    assert "conversation c1" in command(sys.executable, "-m", "qjobs.devtools.seed")
    qjobs = str(Path(sys.executable).with_name("qjobs"))
    published = command(qjobs, "publish", "memory-sync", "--user-id=u1", "--conversation-id=c1", "--sync-type=full")
    message_id = published.split()[3]
    os.environ["FIRESTORE_EMULATOR_HOST"] = exported["FIRESTORE_EMULATOR_HOST"]
    entry = firestore.Client(project=LOCAL_PROJECT).collection("jobs").document(message_id)
    wait_until(lambda: entry.get().exists and entry.get().get("status") == "succeeded", "the sync ran", timeout=30)
    assert message_id in command(qjobs, "jobs", "list", "--job=memory-sync")
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json() == {"status": "ok"}

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    wait_until(lambda: not any(Path(f"/proc/{child}").exists() for child in children), "every part stopped")
    assert not (ROOT / EMULATOR_HOST_FILE).exists() and not (ROOT / ENV_FILE).exists()

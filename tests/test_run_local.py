"""`make run` as a newcomer uses it: the README's walk-through, run as written, does what it
says (jobs land in Firestore, a message that can never succeed leaves a dead-letter record);
a second run in the same folder leaves the first alone; a bad setting is refused before
anything starts; what a killed run left behind is taken over; and Ctrl-C stops all three parts.

Each test runs `make run` (`python -m qjobs.devtools.run_local`, what the Makefile runs) in a
folder of its own, so that it neither disturbs nor is refused by a developer's `make run` in
the checkout; `.venv` is linked into that folder so the README's `.venv/bin/...` commands run
there as written."""

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from qjobs.devtools.emulator import free_port
from qjobs.devtools.run_local import EMULATOR_HOST_FILE, ENV_FILE, LOCK_FILE
from tests.support import ROOT, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.timeout(180)]

BANNER_END = "Press Ctrl-C"
README_SECTION = "## Try it locally"


@dataclass
class MakeRun:
    process: subprocess.Popen[str]
    port: int
    broker_port: int

    def banner(self, timeout: float = 90) -> str:
        """What it printed up to the end of its ready banner."""
        assert self.process.stdout is not None
        printed: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(BANNER_END in line for line in printed):
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            printed.append(line)
        return "".join(printed)

    def stop(self) -> None:
        """As Ctrl-C would, so that it stops its parts; killed only if that fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def process_environment() -> dict[str, str]:
    """This test process's environment without what other tests' fixtures set."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("QSTASH", "FIRESTORE", "GOOGLE"))}


def start_make_run(folder: Path, **settings: str) -> MakeRun:
    port, broker_port = free_port(), free_port()
    env = {**process_environment(), "PORT": str(port), "BROKER_PORT": str(broker_port), **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "qjobs.devtools.run_local"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return MakeRun(process, port, broker_port)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder to run `make run` in, with the checkout's `.venv` as its own."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


@pytest.fixture
def runs() -> Iterator[list[MakeRun]]:
    """Every `make run` a test starts is stopped after it, whatever happened."""
    started: list[MakeRun] = []
    yield started
    for run in reversed(started):
        run.stop()


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


def readme_shell_blocks() -> list[str]:
    """The `sh` code blocks of the README's "Try it locally" section, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def bash(script: str, folder: Path) -> str:
    """`script` as a developer's shell in `folder` runs it; fails the test on any failing command."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=process_environment(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{script}\nfailed: {done.stdout}{done.stderr}"
    return done.stdout


def shown(folder: Path, message_id: str) -> dict[str, dict[str, object] | None]:
    """`qjobs jobs show --json`: the message's ledger entry and dead-letter record (None when absent)."""
    script = f"export $(cat {ENV_FILE})\n.venv/bin/qjobs jobs show --json {message_id} 2>/dev/null || echo {{}}"
    found = json.loads(bash(script, folder))
    return {"ledger": found.get("ledger"), "deadLetter": found.get("deadLetter")}


def succeeded(folder: Path, message_id: str) -> bool:
    return (shown(folder, message_id)["ledger"] or {}).get("status") == "succeeded"


def leave_lock_of_killed_run(folder: Path) -> None:
    """What a `make run` killed with SIGKILL leaves: its lock file, naming a process that is gone."""
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait(timeout=10)
    (folder / LOCK_FILE).parent.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": killed.pid, "service": "http://127.0.0.1:1"}))


def test_readme_walk_through_does_what_it_says(folder: Path, runs: list[MakeRun]) -> None:
    """The walk-through, run as the README writes it: both jobs run, and the message that can
    never succeed leaves the dead-letter record `qjobs jobs show` promises. The folder starts
    with the lock of a run that was killed: it is taken over."""
    leave_lock_of_killed_run(folder)
    run = start_make_run(folder)
    runs.append(run)
    banner = run.banner()
    assert (
        f"Service:   http://127.0.0.1:{run.port}" in banner
        and f"QStash:    http://127.0.0.1:{run.broker_port}" in banner
    )
    assert "Firestore: emulator at" in banner
    children = children_of(run.process.pid)
    assert len(children) >= 3, "the emulator, the broker and the service"
    exported = dict(line.split("=", 1) for line in (folder / ENV_FILE).read_text().splitlines())
    assert exported["FIRESTORE_EMULATOR_HOST"] == (folder / EMULATOR_HOST_FILE).read_text().strip()

    walk_through, dead_letter, *_ = readme_shell_blocks()
    published = bash(walk_through, folder)
    assert "seeded users u1, u2 and conversation c1" in published
    for job in ("memory-sync", "notify-collaborators"):
        found = re.search(rf"published {job} as (msg_\w+)", published)
        assert found, published
        wait_until(functools.partial(succeeded, folder, found[1]), f"{job} ran", timeout=30)

    publish, *look = dead_letter.strip().splitlines()
    assert publish.startswith(".venv/bin/qjobs publish memory-sync"), dead_letter
    message_id = bash(f"export $(cat {ENV_FILE})\n{publish}", folder).split()[3]
    wait_until(lambda: shown(folder, message_id)["deadLetter"], "the failure callback left its record", timeout=30)
    record = shown(folder, message_id)
    assert (record["ledger"] or {}).get("status") == "rejected"
    letter = record["deadLetter"] or {}
    assert letter.get("job") == "memory-sync" and letter.get("status") == 489
    looked = bash("\n".join([f"export $(cat {ENV_FILE})", *look]).replace("MESSAGE_ID", message_id), folder)
    assert any(message_id in line and "489" in line for line in looked.splitlines()), "dlq list shows it"
    assert "dead letter:" in looked and "conversation_not_found" in looked, "jobs show prints the record"
    assert requests.get(f"http://127.0.0.1:{run.port}/health", timeout=5).json() == {"status": "ok"}

    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=60) == 0
    wait_until(lambda: not any(Path(f"/proc/{child}").exists() for child in children), "every part stopped")
    assert not (folder / EMULATOR_HOST_FILE).exists() and not (folder / ENV_FILE).exists()


def test_a_second_run_in_the_same_folder_refuses_and_leaves_the_first_alone(folder: Path, runs: list[MakeRun]) -> None:
    first = start_make_run(folder)
    runs.append(first)
    assert BANNER_END in first.banner()
    env_file = (folder / ENV_FILE).read_text()

    second = start_make_run(folder)
    runs.append(second)
    output, _ = second.process.communicate(timeout=30)
    assert second.process.returncode == 1
    assert f"process {first.process.pid}" in output and f"127.0.0.1:{first.port}" in output, output
    assert "Service:" not in output and BANNER_END not in output

    assert (folder / ENV_FILE).read_text() == env_file
    assert requests.get(f"http://127.0.0.1:{first.port}/health", timeout=5).json() == {"status": "ok"}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{second.port}/health", timeout=5)
    first.process.send_signal(signal.SIGINT)
    assert first.process.wait(timeout=60) == 0
    assert not (folder / ENV_FILE).exists()


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port something else is already listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"LOG_LEVEL": "chatty"}, "invalid configuration: LOG_LEVEL must be one of"),
        ({"SMTP_URL": "smtp://mail.example.test:25"}, "invalid configuration: EMAIL_FROM is required"),
        ({"PORT": "80a"}, "PORT must be a port number (1-65535), not '80a'"),
        ({"BROKER_PORT": "70000"}, "BROKER_PORT must be a port number (1-65535), not '70000'"),
        ({"PORT": "8123", "BROKER_PORT": "8123"}, "PORT and BROKER_PORT must differ (both are 8123)"),
        ({"PORT": "{listening}"}, "port {listening} (PORT) is in use"),
        ({"BROKER_PORT": "{listening}"}, "port {listening} (BROKER_PORT) is in use"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_starts(
    folder: Path, runs: list[MakeRun], listening_port: int, settings: dict[str, str], said: str
) -> None:
    settings = {name: value.format(listening=listening_port) for name, value in settings.items()}
    run = start_make_run(folder, **settings)
    runs.append(run)
    output, _ = run.process.communicate(timeout=30)
    assert said.format(listening=listening_port) in output
    assert run.process.returncode != 0
    assert "Service:" not in output and BANNER_END not in output
    assert not (folder / ENV_FILE).exists() and not (folder / ".emulator" / "firestore.log").exists()
    assert len(output.strip().splitlines()) == 1, f"one line that says what is wrong: {output}"


def test_the_files_of_a_killed_run_are_cleared_once_the_folder_is_taken_over(
    folder: Path, runs: list[MakeRun], listening_port: int
) -> None:
    """They point at parts that are gone: `export $(cat .emulator/env)` must not find them, even
    when this run then stops (here: its port is in use)."""
    leave_lock_of_killed_run(folder)
    (folder / ENV_FILE).write_text("QSTASH_URL=http://127.0.0.1:1\n")
    (folder / EMULATOR_HOST_FILE).write_text("127.0.0.1:1")
    run = start_make_run(folder, PORT=str(listening_port))
    runs.append(run)
    output, _ = run.process.communicate(timeout=30)
    assert f"port {listening_port} (PORT) is in use" in output and run.process.returncode == 1
    assert not (folder / ENV_FILE).exists() and not (folder / EMULATOR_HOST_FILE).exists()

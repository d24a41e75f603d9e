"""`make run` as a newcomer uses it: the README's walk-through, run as written, does what it
says (jobs land in Firestore, a message that can never succeed leaves a dead-letter record);
a second run in the same folder leaves the first alone; a bad setting is refused before
anything starts; what a killed run left behind is taken over; Ctrl-C, or SIGTERM to make, stops
all three parts; a run killed outright takes them with it; and with email and a webhook on, the
seed and the documented examples send one email and the webhook.

Each test runs `make run` (`python -m qjobs.devtools.run_local`, what the Makefile runs) in a
folder of its own, so that it neither disturbs nor is refused by a developer's `make run` in
the checkout; `.venv` is linked into that folder so the README's `.venv/bin/...` commands run
there as written."""

import functools
import json
import os
import re
import shlex
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


RUNNER = [sys.executable, "-m", "qjobs.devtools.run_local"]
"""What the Makefile's `run` target runs."""
MAKE = ["make", "-f", str(ROOT / "Makefile"), "-o", ".venv/.installed", "run"]
"""`make run` itself, in a folder of its own, told that .venv is up to date (it is the checkout's)."""


def start_make_run(folder: Path, **settings: str) -> MakeRun:
    return start_command(folder, RUNNER, settings)


def start_command(folder: Path, command: list[str], settings: dict[str, str]) -> MakeRun:
    port, broker_port = free_port(), free_port()
    env = {**process_environment(), "PORT": str(port), "BROKER_PORT": str(broker_port), **settings}
    process = subprocess.Popen(
        command,
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
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    """Its children, theirs, and so on: the emulator's JVM (its launcher's child) included."""
    children = children_of(pid)
    return children + [grandchild for child in children for grandchild in descendants_of(child)]


def command_line(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, which only awaits its parent's reaping, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def all_stopped(pids: list[int]) -> bool:
    return not any(running(pid) for pid in pids)


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
    assert "Email:     off (SMTP_URL and EMAIL_FROM turn it on)" in banner and "Webhook:   off" in banner
    children = children_of(run.process.pid)
    assert len(children) >= 3, "the emulator, the broker and the service"
    exported = dict(line.split("=", 1) for line in (folder / ENV_FILE).read_text().splitlines())
    assert exported["FIRESTORE_EMULATOR_HOST"] == (folder / EMULATOR_HOST_FILE).read_text().strip()

    walk_through, dead_letter, *_ = readme_shell_blocks()
    published = bash(walk_through, folder)
    assert "seeded users u1 (Maya), u2 (Ada, ada@example.test) and u3 (Grace, email off)" in published
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


# --- email and webhook ------------------------------------------------------------------


def documented_channels_block() -> str:
    """The README's block that starts the two receivers and `make run` with both channels on."""
    (block,) = [block for block in readme_shell_blocks() if "aiosmtpd" in block]
    return block


def notify_doc_example() -> tuple[str, dict[str, object]]:
    """docs/notify-collaborators.md's `qjobs send` example, and the answer it shows."""
    doc = (ROOT / "docs" / "notify-collaborators.md").read_text()
    command = re.findall(r"```sh\n(.*?)```", doc, flags=re.DOTALL)[0]
    shown = re.findall(r"```json\n(.*?)```", doc, flags=re.DOTALL)[0]
    return command, json.loads(shown.replace('"msg_..."', '"msg_"'))


def test_with_email_and_a_webhook_on_the_documented_examples_send_one_email_and_the_webhook(
    folder: Path, runs: list[MakeRun]
) -> None:
    """The README's block run as written (on free ports): its receivers, then `make run` with
    its settings. The banner says both channels are on; the walk-through's notify-collaborators
    (the seed's data) mails Ada alone and posts the webhook; docs/notify-collaborators.md's
    example answers what that page shows."""
    block = documented_channels_block()
    for port in ("12525", "12526"):
        block = block.replace(port, str(free_port()))
    *receivers, start = [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    started = [
        subprocess.Popen(
            ["bash", "-c", line.split(" &", 1)[0]],
            cwd=folder,
            env={**process_environment(), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for line in receivers
    ]
    try:
        words = shlex.split(start.split("#", 1)[0])
        assert words[-2:] == ["make", "run"], start
        settings = dict(word.split("=", 1) for word in words[:-2])
        run = start_make_run(folder, **settings)
        runs.append(run)
        banner = run.banner()
        smtp_port = settings["SMTP_URL"].rsplit(":", 1)[1]
        assert f"Email:     on: SMTP 127.0.0.1:{smtp_port}, from Trips <trips@example.test>" in banner, banner
        assert f"Webhook:   on: POST to {settings['COLLABORATOR_WEBHOOK_URL']}" in banner, banner

        walk_through, *_ = readme_shell_blocks()
        published = bash(walk_through, folder)
        found = re.search(r"published notify-collaborators as (msg_\w+)", published)
        assert found, published
        wait_until(functools.partial(succeeded, folder, found[1]), "notify-collaborators ran", timeout=30)
        result = (shown(folder, found[1])["ledger"] or {})["result"]
        assert isinstance(result, dict)
        assert (result["notified"], result["email"], result["webhook"]) == (
            2,
            {"sent": 1, "failed": 0, "skipped": 1},
            "sent",
        ), result

        example, documented = notify_doc_example()
        answer = json.loads(bash(f"export $(cat {ENV_FILE})\n{example}", folder).splitlines()[-1])
        assert {**answer, "messageId": "msg_"} == documented
    finally:
        for receiver in started:
            os.killpg(receiver.pid, signal.SIGTERM)
    mail, webhook = (receiver.communicate(timeout=10)[0] for receiver in started)
    assert re.findall(r"^To: (.*)$", mail, flags=re.MULTILINE) == ["ada@example.test"] * 2, mail
    assert "Hi Ada," in mail and "Maya updated =E2=80=9CLisbon in June=E2=80=9D." in mail, mail
    assert webhook.count('"POST /hooks HTTP/1.1" 204') == 2 and '"recipientIds":["u2","u3"]' in webhook, webhook


# --- stopping ---------------------------------------------------------------------------


def test_a_run_killed_outright_takes_its_parts_with_it(folder: Path, runs: list[MakeRun]) -> None:
    """`kill -9`: the run's own clean-up never runs, and its guard stops the emulator (the JVM
    its launcher forked too), the broker and the service (its workers too) within seconds."""
    run = start_make_run(folder)
    runs.append(run)
    assert BANNER_END in run.banner()
    parts = descendants_of(run.process.pid)
    assert any("java" in command_line(pid) for pid in parts), "the emulator's JVM, a grandchild"
    assert any("gunicorn" in command_line(pid) or "functions_framework" in command_line(pid) for pid in parts)

    run.process.kill()
    run.process.wait(timeout=10)
    wait_until(lambda: all_stopped(parts), "every part of the killed run stopped", timeout=15)
    assert requests_refused(run.port) and requests_refused(run.broker_port)


def requests_refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_parts_a_killed_run_left_are_named_with_the_command_that_stops_them(folder: Path, runs: list[MakeRun]) -> None:
    """Should the guard be killed too, the parts outlive the run; the next run in the folder
    names each, and the command it gives stops them."""
    first = start_make_run(folder)
    runs.append(first)
    assert BANNER_END in first.banner()
    parts = descendants_of(first.process.pid)
    (guard,) = [pid for pid in children_of(first.process.pid) if "--guard" in command_line(pid)]
    left = [pid for pid in parts if pid != guard]
    try:
        os.kill(guard, signal.SIGKILL)
        first.process.kill()
        first.process.wait(timeout=10)
        time.sleep(1)
        assert not all_stopped(left), "nothing stopped them"

        second = start_make_run(folder, PORT=str(first.port), BROKER_PORT=str(first.broker_port))
        runs.append(second)
        output, _ = second.process.communicate(timeout=30)
        assert second.process.returncode == 1
        said = re.search(r"`(kill -- [-\d ]+)` stops them", output)
        assert said and f"port {first.port} (PORT) is in use: a make run that was killed left" in output, output
        for what in ("the Firestore emulator (process group ", "the broker (process ", "the service (process "):
            assert what in output, output
        bash(said[1], folder)
        wait_until(lambda: all_stopped(left), "the named command stopped them", timeout=15)
    finally:
        for pid in left:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_make_run_in_the_background_stops_on_sigterm_to_make(folder: Path, runs: list[MakeRun]) -> None:
    """GNU make passes SIGTERM on to the recipe it runs (not SIGINT): `kill %1` stops a
    backgrounded `make run` and every part of it, as the README says."""
    run = start_command(folder, MAKE, {})
    runs.append(run)
    assert BANNER_END in run.banner()
    parts = descendants_of(run.process.pid)
    assert any("qjobs.devtools.run_local" in command_line(pid) for pid in parts), "make runs the runner"
    run.process.send_signal(signal.SIGTERM)
    run.process.wait(timeout=60)
    wait_until(lambda: all_stopped(parts), "every part stopped", timeout=30)
    assert not (folder / ENV_FILE).exists()

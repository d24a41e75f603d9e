"""`make run`: the Firestore emulator, the local QStash-compatible broker and the service,
together, with Upstash's development keys.

It keeps its files in `.emulator/` of the folder it runs in (`make run`: the checkout), and
`.emulator/env` is what the README's walk-through exports, so one folder has one run: a second
run there refuses to start and names the first, rather than overwriting the first's files and
deleting them on its way out. The folder is held with an advisory lock (`flock`) that the
kernel releases when the holder dies, however it dies, so a lock left by a killed run is simply
taken over; the file only records who holds it, for the refusal's message.

The configuration is checked, with the service's own `Settings`, before anything starts, and
the ready banner, which also says which of notify-collaborators' channels are on, is printed
only once the service answers `/health`. It stops all three on Ctrl-C (or SIGTERM), whichever
way the service ends.

A run killed outright (`kill -9`, a closed terminal) runs no clean-up of its own, so a guard
does it: a small process of its own session, told of each part as it starts, which stops them
all when its pipe from the run reaches its end, as it does when the run dies, however it dies.
A parent-death signal (Linux's PR_SET_PDEATHSIG) would reach only the run's own children:
the emulator's launcher is a shell script that forks the JVM, which would be left running,
and the signal does not exist elsewhere (macOS). The lock file also names each part, so
that if the guard too was killed, the next run can say which processes are left and how to
stop them.
"""

import contextlib
import dataclasses
import fcntl
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, cast
from urllib.parse import urlsplit

from qjobs.config import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, ConfigError, Settings, load_settings
from qjobs.devtools.broker import DEV_TOKEN
from qjobs.devtools.emulator import Emulator, EmulatorError, Started, start_emulator

DEV_KEYS = {
    "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
    "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
}
LOCAL_PROJECT = "local-project"
STATE_DIR = ".emulator"
EMULATOR_HOST_FILE = ".emulator/host"
"""Where `make run` leaves its emulator's address, for the other local tools."""
ENV_FILE = ".emulator/env"
"""Where `make run` leaves the variables that point `qjobs` and the publishing helpers at it."""
LOCK_FILE = ".emulator/run.lock"
"""Held (flock) by the run that owns the folder; it records that run's process id and URLs."""
FIRESTORE_LOG = ".emulator/firestore.log"
BROKER_LOG = ".emulator/broker.log"
GUARD_LOG = ".emulator/guard.log"
GUARD_STOP_SECONDS = 10
"""How long the guard gives the parts of a killed run to stop on SIGTERM before SIGKILL."""
SERVICE_SOURCE = Path(__file__).resolve().parents[2] / "main.py"
"""The checkout's entry point, by absolute path: the run does not depend on the folder it runs in."""
READY_SECONDS = 60
EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIGURATION = 2


class RunError(RuntimeError):
    """Why `make run` cannot start (or go on): one line for the developer, nothing left running."""


class ConfigurationError(RunError):
    """A setting in the environment is wrong; nothing was started."""


@dataclass(frozen=True)
class Ports:
    service: int
    broker: int


@dataclass(frozen=True)
class Part:
    """A process the run started, as the guard and the lock file's record know it."""

    name: str
    pid: int
    group: bool = False
    """Whether `pid` is that of a process group of its own (the emulator: its launcher and
    the JVM the launcher forks), which is signalled as a whole."""

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            (os.killpg if self.group else os.kill)(self.pid, signum)

    def running(self) -> bool:
        """Whether it (any process of its group) still runs; a zombie, which only awaits its
        parent's reaping, does not."""
        proc = Path("/proc")
        if not proc.is_dir():  # no /proc (macOS): whether it can be signalled
            try:
                (os.killpg if self.group else os.kill)(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        entries = proc.iterdir() if self.group else [proc / str(self.pid)]
        for entry in entries:
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            state, group = fields[0], int(fields[2])
            if state not in ("Z", "X") and (group == self.pid if self.group else True):
                return True
        return False

    def described(self) -> str:
        what = {"emulator": "the Firestore emulator", "broker": "the broker", "service": "the service"}
        return f"{what.get(self.name, self.name)} (process {'group ' if self.group else ''}{self.pid})"

    @property
    def kill_argument(self) -> str:
        return f"-{self.pid}" if self.group else str(self.pid)


def stop_parts(parts: Iterable[Part], timeout: float = GUARD_STOP_SECONDS) -> None:
    """SIGTERM to each part, then SIGKILL to those still running after `timeout` seconds."""
    parts = list(parts)
    for part in parts:
        part.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(part.running() for part in parts):
        time.sleep(0.1)
    for part in parts:
        if part.running():
            part.signal(signal.SIGKILL)


def guard(reports: IO[bytes]) -> int:
    """The guard's whole life: read the parts the run reports (`Part` as JSON, one a line)
    until the run dies and the pipe ends, then stop them. A run that stops by itself stops
    its parts and then kills its guard before the pipe ends, so the end of the pipe always
    means the run died. Ctrl-C does not reach the guard: it runs in a session of its own."""
    parts = [Part(**json.loads(line)) for line in reports if line.strip()]
    stop_parts(parts)
    return 0


class Guard:
    """The run's side of the guard: starts it, and tells it of each part as soon as it exists."""

    def __init__(self) -> None:
        with open(GUARD_LOG, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "qjobs.devtools.run_local", "--guard"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.reports = cast(IO[bytes], self.process.stdin)  # stdin=PIPE: never None

    def watch(self, part: Part) -> None:
        self.reports.write(json.dumps(dataclasses.asdict(part)).encode() + b"\n")
        self.reports.flush()

    def dismiss(self) -> None:
        """Once the parts were stopped by the run itself: the guard is killed before its pipe
        ends, so that it never signals a process id that may by then be another process's."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.reports.close()


def service_configuration(port: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The service's environment except the emulator's address (known only once it runs)."""
    env = {**environ, **DEV_KEYS}
    env.setdefault("GOOGLE_CLOUD_PROJECT", LOCAL_PROJECT)
    env.update(PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", PORT=str(port))
    env.pop("K_SERVICE", None)
    return env


def service_environment(port: int, emulator_host: str) -> dict[str, str]:
    return {**service_configuration(port, os.environ), "FIRESTORE_EMULATOR_HOST": emulator_host}


def operator_environment(port: int, broker_port: int, emulator_host: str) -> dict[str, str]:
    """What `qjobs` and an application need to publish through the local broker to the local
    service and to read the local Firestore."""
    return {
        "QSTASH_URL": f"http://127.0.0.1:{broker_port}",
        "QSTASH_TOKEN": DEV_TOKEN,
        "JOBS_BASE_URL": f"http://127.0.0.1:{port}",
        "FIRESTORE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT") or LOCAL_PROJECT,
    }


def port_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    """The port in `environ[name]` (1-65535), or `default` when unset or empty; ConfigurationError otherwise."""
    text = environ.get(name) or str(default)
    if not (text.isdecimal() and 1 <= int(text) <= 65535):
        raise ConfigurationError(f"{name} must be a port number (1-65535), not {text!r}")
    return int(text)


def validated_ports(environ: Mapping[str, str]) -> Ports:
    """The service's and the broker's ports (`PORT`, `BROKER_PORT`), once the whole configuration
    is known to be one the service accepts (its own `Settings`); ConfigurationError otherwise."""
    ports = Ports(port_setting(environ, "PORT", 8080), port_setting(environ, "BROKER_PORT", 8081))
    if ports.service == ports.broker:
        raise ConfigurationError(f"PORT and BROKER_PORT must differ (both are {ports.service})")
    try:
        load_settings(service_configuration(ports.service, environ))
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None
    return ports


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (SO_REUSEADDR: a closed connection's
    TIME_WAIT does not count, as it does not stop the servers that will bind it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def left_running(parts: list[Part]) -> str:
    """What a killed run left running, and the command that stops it."""
    names = [part.described() for part in parts]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    command = shlex.join(["kill", "--", *(part.kill_argument for part in parts)])
    return f"a make run that was killed left {listed} running: `{command}` stops them"


def check_ports_free(ports: Ports, left: list[Part]) -> None:
    """RunError when the service's or the broker's port is taken, naming what a killed run
    left running, if it did (then it is what holds them, usually)."""
    for port, name in ((ports.service, "PORT"), (ports.broker, "BROKER_PORT")):
        if port_in_use(port):
            fix = left_running(left) if left else f"set {name} to another port, e.g. {name}={port + 10}"
            raise RunError(f"port {port} ({name}) is in use: {fix}")


@dataclass
class Folder:
    """This folder's `.emulator/`, held by this run: its lock file records who holds it and
    the parts it started, so that a refused run can name the holder, and the run after a
    killed one what it left."""

    descriptor: int
    holder: dict[str, object]
    left: list[Part]
    """The parts of the run that held the folder before, if it was killed, still running."""
    parts: list[Part] = dataclasses.field(default_factory=list)

    def started(self, part: Part) -> None:
        self.parts.append(part)
        self.write()

    def write(self) -> None:
        """The record; what a killed run left stays in it, to be named again if still running."""
        record = {**self.holder, "parts": [dataclasses.asdict(part) for part in [*self.left, *self.parts]]}
        os.ftruncate(self.descriptor, 0)
        os.pwrite(self.descriptor, json.dumps(record).encode(), 0)


def parts_of(record: bytes) -> list[Part]:
    """The parts a lock file's record names (none when it names none, or is not a record)."""
    try:
        return [Part(**part) for part in json.loads(record).get("parts", [])]
    except (ValueError, TypeError, AttributeError):
        return []


@contextlib.contextmanager
def holding_folder(ports: Ports) -> Iterator[Folder]:
    """Hold this folder's `.emulator/` for the duration; RunError naming the holder when another
    run holds it. The record is cleared on the way out; the file stays (removing a lock file
    others may have open would let two runs hold two different files)."""
    Path(STATE_DIR).mkdir(exist_ok=True)
    descriptor = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(folder_taken(os.pread(descriptor, 4096, 0))) from None
        left = [part for part in parts_of(os.pread(descriptor, 65536, 0)) if part.running()]
        holder: dict[str, object] = {
            "pid": os.getpid(),
            "service": f"http://127.0.0.1:{ports.service}",
            "broker": f"http://127.0.0.1:{ports.broker}",
        }
        folder = Folder(descriptor, holder, left)
        folder.write()
        try:
            yield folder
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def forget_killed_run() -> None:
    """A run that was killed left its files pointing at parts that are gone (or going): once the
    folder is ours they are removed, so that they never point at anything but this run."""
    for leftover in (ENV_FILE, EMULATOR_HOST_FILE):
        Path(leftover).unlink(missing_ok=True)


def folder_taken(record: bytes) -> str:
    """The refusal, naming the run that holds the folder as far as its record says."""
    try:
        holder = json.loads(record)
        who = f"process {int(holder['pid'])}, service {holder['service']}"
        stop = f"Ctrl-C in its terminal, or `kill -INT {int(holder['pid'])}`"
    except (ValueError, KeyError, TypeError):
        who, stop = "a process that is still starting", "Ctrl-C in its terminal"
    return (
        f"another make run is running in this folder ({who}); its files are in {STATE_DIR}/. "
        f"Stop it first ({stop}), or run this one from another checkout"
    )


def channels(settings: Settings) -> str:
    """Which of notify-collaborators' channels are on, for the banner (never a password)."""
    server = settings.smtp_server
    email = (
        f"on: SMTP {server.host}:{server.port}, from {settings.email_from}"
        if server and settings.email_from
        else "off (SMTP_URL and EMAIL_FROM turn it on)"
    )
    webhook_url = urlsplit(settings.collaborator_webhook_url or "")
    webhook = (
        f"on: POST to {webhook_url.scheme}://{webhook_url.hostname}"
        + (f":{webhook_url.port}" if webhook_url.port else "")
        + webhook_url.path
        if settings.webhook_enabled
        else "off (COLLABORATOR_WEBHOOK_URL and COLLABORATOR_WEBHOOK_SECRET turn it on)"
    )
    return f"Email:     {email}\nWebhook:   {webhook}"


def usage(port: int, broker_port: int, emulator_host: str, settings: Settings) -> str:
    base = f"http://127.0.0.1:{port}"
    project = operator_environment(port, broker_port, emulator_host)["GOOGLE_CLOUD_PROJECT"]
    return f"""
Service:   {base}  (health: {base}/health)
QStash:    http://127.0.0.1:{broker_port}  (local broker, in memory)
Firestore: emulator at {emulator_host}, project {project}
{channels(settings)}
From another terminal, in this folder:
  export $(cat {ENV_FILE})                  # where the broker, the service and the emulator are
  .venv/bin/python -m qjobs.devtools.seed      # users u1-u3, trip trip-1, conversation c1 of u1
  .venv/bin/qjobs publish memory-sync --user-id u1 --conversation-id c1 --sync-type incremental
  .venv/bin/qjobs publish notify-collaborators --trip-id trip-1 --event trip_updated \\
    --collaborator-ids u1 u2 u3 --actor-id u1 --message "Dates moved"   # an email to u2, if on
  .venv/bin/qjobs jobs list                    # what ran; `.venv/bin/qjobs --help` for the rest
Press Ctrl-C to stop all three (from elsewhere: `kill -INT {os.getpid()}`).
"""


def write_env_file(variables: dict[str, str]) -> None:
    Path(ENV_FILE).write_text("".join(f"{name}={value}\n" for name, value in variables.items()))


def start_broker_process(port: int, started: Callable[[Part], object]) -> subprocess.Popen[bytes]:
    """The broker as a process of its own, answering on `port` (or RunError); `started` is
    told of it as soon as it exists."""
    env = {**os.environ, **DEV_KEYS}
    command = [sys.executable, "-m", "qjobs.devtools.broker", f"--port={port}"]
    with open(BROKER_LOG, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    started(Part("broker", process.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    log_tail = Path(BROKER_LOG).read_text(errors="replace")[-500:]
    raise RunError(f"the broker did not start on port {port} (set BROKER_PORT to use another port): {log_tail}")


def start_service(port: int, emulator_host: str, started: Callable[[Part], object]) -> subprocess.Popen[bytes]:
    """functions-framework serving main.py on `port`; its output goes to this terminal, and
    `started` is told of it as soon as it exists."""
    command = [
        sys.executable,
        "-m",
        "functions_framework",
        "--target=jobs",
        f"--source={SERVICE_SOURCE}",
        f"--port={port}",
        "--host=127.0.0.1",
    ]
    process = subprocess.Popen(command, env=service_environment(port, emulator_host))
    started(Part("service", process.pid))
    return process


def wait_until_serving(server: subprocess.Popen[bytes], port: int, timeout: float = READY_SECONDS) -> None:
    """Return once `GET /health` answers 200; RunError when the service exits first (its own
    message is above, in its output) or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RunError(f"the service stopped at start-up with exit code {server.returncode} (see above)")
        if health_answers(port):
            return
        time.sleep(0.1)
    raise RunError(f"the service did not answer on port {port} within {timeout:.0f}s")


def health_answers(port: int) -> bool:
    """Whether the service answers its health check (something else on the port, speaking
    another protocol, is no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run(ports: Ports, folder: Folder) -> int:
    """Start the three parts, print the banner once they serve, and wait for the service to end
    or for Ctrl-C; whatever happens, stop what was started and remove the files that point at it.
    The guard is started first and dismissed last: whenever a part exists, the guard knows it."""
    with contextlib.ExitStack() as parts:
        guard = Guard()
        parts.callback(guard.dismiss)

        def started(part: Part) -> None:
            guard.watch(part)
            folder.started(part)

        emulator = start_firestore(lambda process: started(Part("emulator", process.pid, group=True)))
        parts.callback(emulator.stop)
        parts.callback(stop_process, start_broker_process(ports.broker, started), 10)
        server = start_service(ports.service, emulator.host, started)
        parts.callback(stop_process, server, 30)
        wait_until_serving(server, ports.service)
        parts.callback(Path(EMULATOR_HOST_FILE).unlink, missing_ok=True)
        parts.callback(Path(ENV_FILE).unlink, missing_ok=True)
        Path(EMULATOR_HOST_FILE).write_text(emulator.host)
        write_env_file(operator_environment(ports.service, ports.broker, emulator.host))
        settings = load_settings(service_environment(ports.service, emulator.host))
        print(usage(ports.service, ports.broker, emulator.host, settings), flush=True)
        return server.wait()


def start_firestore(started: Started) -> Emulator:
    try:
        return start_emulator(log_path=Path(FIRESTORE_LOG), started=started)
    except EmulatorError as error:
        raise RunError(str(error)) from None


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind whatever is under way, so that everything started is stopped
    (SIGINT is set too: a shell may start us with it ignored, as it does a background job).
    Once stopping, further signals are ignored, so a second Ctrl-C cannot cut the clean-up
    short and leave the emulator behind (each part's stop is bounded in time)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def main() -> int:
    """Exit status: the service's own when it ends by itself, 0 when stopped with Ctrl-C or
    SIGTERM, 1 when it could not start, 2 for a bad setting."""
    try:
        ports = validated_ports(os.environ)
    except ConfigurationError as error:
        print(f"make run: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    stop_on_signals()
    try:
        with holding_folder(ports) as folder:
            forget_killed_run()
            check_ports_free(ports, folder.left)
            if folder.left:
                print(f"make run: note: {left_running(folder.left)}", file=sys.stderr, flush=True)
            return run(ports, folder)
    except RunError as error:
        print(f"make run: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(guard(sys.stdin.buffer) if sys.argv[1:] == ["--guard"] else main())

"""`make run`: the Firestore emulator, the local QStash-compatible broker and the service,
together, with Upstash's development keys.

It keeps its files in `.emulator/` of the folder it runs in (`make run`: the checkout), and
`.emulator/env` is what the README's walk-through exports, so one folder has one run: a second
run there refuses to start and names the first, rather than overwriting the first's files and
deleting them on its way out. The folder is held with an advisory lock (`flock`) that the
kernel releases when the holder dies, however it dies, so a lock left by a killed run is simply
taken over; the file only records who holds it, for the refusal's message.

The configuration is checked, with the service's own `Settings`, before anything starts, and
the ready banner is printed only once the service answers `/health`. It stops all three on
Ctrl-C (or SIGTERM), whichever way the service ends.
"""

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from qjobs.config import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, ConfigError, load_settings
from qjobs.devtools.broker import DEV_TOKEN
from qjobs.devtools.emulator import Emulator, EmulatorError, start_emulator

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


def check_ports_free(ports: Ports) -> None:
    for port, name in ((ports.service, "PORT"), (ports.broker, "BROKER_PORT")):
        if port_in_use(port):
            raise RunError(
                f"port {port} ({name}) is in use: set {name} to another port, e.g. {name}={port + 10} "
                "(a make run that was killed may have left its service or broker running)"
            )


@contextlib.contextmanager
def holding_folder(ports: Ports) -> Iterator[None]:
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
        holder = {
            "pid": os.getpid(),
            "service": f"http://127.0.0.1:{ports.service}",
            "broker": f"http://127.0.0.1:{ports.broker}",
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        try:
            yield
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


def usage(port: int, broker_port: int, emulator_host: str) -> str:
    base = f"http://127.0.0.1:{port}"
    project = operator_environment(port, broker_port, emulator_host)["GOOGLE_CLOUD_PROJECT"]
    return f"""
Service:   {base}  (health: {base}/health)
QStash:    http://127.0.0.1:{broker_port}  (local broker, in memory)
Firestore: emulator at {emulator_host}, project {project}
From another terminal, in this folder:
  export $(cat {ENV_FILE})                  # where the broker, the service and the emulator are
  .venv/bin/python -m qjobs.devtools.seed      # a sample conversation c1 of user u1
  .venv/bin/qjobs publish memory-sync --user-id u1 --conversation-id c1 --sync-type incremental
  .venv/bin/qjobs jobs list                    # what ran; `.venv/bin/qjobs --help` for the rest
Press Ctrl-C to stop all three.
"""


def write_env_file(variables: dict[str, str]) -> None:
    Path(ENV_FILE).write_text("".join(f"{name}={value}\n" for name, value in variables.items()))


def start_broker_process(port: int) -> subprocess.Popen[bytes]:
    """The broker as a process of its own, answering on `port` (or RunError)."""
    env = {**os.environ, **DEV_KEYS}
    command = [sys.executable, "-m", "qjobs.devtools.broker", f"--port={port}"]
    with open(BROKER_LOG, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    log_tail = Path(BROKER_LOG).read_text(errors="replace")[-500:]
    raise RunError(f"the broker did not start on port {port} (set BROKER_PORT to use another port): {log_tail}")


def start_service(port: int, emulator_host: str) -> subprocess.Popen[bytes]:
    """functions-framework serving main.py on `port`; its output goes to this terminal."""
    command = [
        sys.executable,
        "-m",
        "functions_framework",
        "--target=jobs",
        f"--source={SERVICE_SOURCE}",
        f"--port={port}",
        "--host=127.0.0.1",
    ]
    return subprocess.Popen(command, env=service_environment(port, emulator_host))


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
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run(ports: Ports) -> int:
    """Start the three parts, print the banner once they serve, and wait for the service to end
    or for Ctrl-C; whatever happens, stop what was started and remove the files that point at it."""
    with contextlib.ExitStack() as parts:
        emulator = start_firestore()
        parts.callback(emulator.stop)
        parts.callback(stop_process, start_broker_process(ports.broker), 10)
        server = start_service(ports.service, emulator.host)
        parts.callback(stop_process, server, 30)
        wait_until_serving(server, ports.service)
        parts.callback(Path(EMULATOR_HOST_FILE).unlink, missing_ok=True)
        parts.callback(Path(ENV_FILE).unlink, missing_ok=True)
        Path(EMULATOR_HOST_FILE).write_text(emulator.host)
        write_env_file(operator_environment(ports.service, ports.broker, emulator.host))
        print(usage(ports.service, ports.broker, emulator.host), flush=True)
        return server.wait()


def start_firestore() -> Emulator:
    try:
        return start_emulator(log_path=Path(FIRESTORE_LOG))
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
        with holding_folder(ports):
            forget_killed_run()
            check_ports_free(ports)
            return run(ports)
    except RunError as error:
        print(f"make run: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())

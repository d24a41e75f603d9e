"""`make run`: the Firestore emulator, the local QStash-compatible broker and the service,
together, with Upstash's development keys.

Stops all three on Ctrl-C (or SIGTERM), whichever way the service ends.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from qjobs.config import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from qjobs.devtools.broker import DEV_TOKEN
from qjobs.devtools.emulator import EmulatorError, start_emulator

DEV_KEYS = {
    "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
    "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
}
LOCAL_PROJECT = "local-project"
EMULATOR_HOST_FILE = ".emulator/host"
"""Where `make run` leaves its emulator's address, for the other local tools."""
ENV_FILE = ".emulator/env"
"""Where `make run` leaves the variables that point `qjobs` and the publishing helpers at it."""


def service_environment(port: int, emulator_host: str) -> dict[str, str]:
    env = {**os.environ, **DEV_KEYS}
    env.setdefault("GOOGLE_CLOUD_PROJECT", LOCAL_PROJECT)
    env.update(
        FIRESTORE_EMULATOR_HOST=emulator_host,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
    )
    env.pop("K_SERVICE", None)
    return env


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
    """The broker as a process of its own, answering on `port` (or BrokerError)."""
    env = {**os.environ, **DEV_KEYS}
    command = [sys.executable, "-m", "qjobs.devtools.broker", f"--port={port}"]
    with open(".emulator/broker.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process
        time.sleep(0.05)
    process.kill()
    raise BrokerError(f"the broker did not start on port {port}: {Path('.emulator/broker.log').read_text()[-500:]}")


class BrokerError(RuntimeError):
    pass


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    broker_port = int(os.environ.get("BROKER_PORT", "8081"))
    Path(".emulator").mkdir(exist_ok=True)
    try:
        emulator = start_emulator(log_path=Path(".emulator/firestore.log"))
    except EmulatorError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    try:
        broker = start_broker_process(broker_port)
    except BrokerError as error:
        emulator.stop()
        print(f"make run: {error} (set BROKER_PORT to use another port)", file=sys.stderr)
        return 1
    Path(EMULATOR_HOST_FILE).write_text(emulator.host)
    write_env_file(operator_environment(port, broker_port, emulator.host))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target=jobs",
            "--source=main.py",
            f"--port={port}",
            "--host=127.0.0.1",
        ],
        env=service_environment(port, emulator.host),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(signum, stop)
    print(usage(port, broker_port, emulator.host), flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        return 0
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        emulator.stop()
        Path(EMULATOR_HOST_FILE).unlink(missing_ok=True)
        Path(ENV_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())

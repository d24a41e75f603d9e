"""The Firestore emulator as a child process on a free port, for tests and `make run`.

The launcher gcloud itself runs is started directly (faster, no gcloud wrapper), in its
own process group so that stopping it also stops the JVM it spawns.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "the Firestore emulator is missing: install it with "
    "`gcloud components install cloud-firestore-emulator` (or the Debian/Ubuntu package "
    "google-cloud-cli-firestore-emulator) and Java 21+ (17 still works, but gcloud warns that its support ends)"
)


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_launcher() -> list[str]:
    gcloud = shutil.which("gcloud")
    if gcloud is None or shutil.which("java") is None:
        raise EmulatorError(INSTALL_HINT)
    sdk_root = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout.strip()
    launcher = Path(sdk_root, "platform", "cloud-firestore-emulator", "cloud_firestore_emulator")
    if not launcher.exists():
        raise EmulatorError(INSTALL_HINT)
    return [str(launcher), "start"]


@dataclass
class Emulator:
    host: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def clear(self, project: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


BIND_ATTEMPTS = 3


class PortTaken(EmulatorError):
    """The port was free when chosen and taken when the emulator bound it."""


Started = Callable[["subprocess.Popen[bytes]"], object]
"""Told of each emulator process as soon as it exists, before it answers: whoever must stop
it if the caller dies while waiting (its process group is its pid)."""


def start_emulator(
    port: int | None = None, log_path: Path | None = None, timeout: float = 60, started: Started | None = None
) -> Emulator:
    """The emulator on `port`, or on a free port. A free port can be taken between being
    chosen and being bound (the emulator itself first opens a WebSocket server on a port the
    system picks, which may be that one): then another is tried."""
    for _ in range(BIND_ATTEMPTS - 1):
        try:
            return start_on(port or free_port(), log_path, timeout, started)
        except PortTaken:
            if port is not None:
                raise
    return start_on(port or free_port(), log_path, timeout, started)


def start_on(port: int, log_path: Path | None, timeout: float, started: Started | None = None) -> Emulator:
    host = f"127.0.0.1:{port}"
    command = [*find_launcher(), "--host=127.0.0.1", f"--port={port}"]
    with tempfile.TemporaryDirectory() as scratch:
        log_file = log_path or Path(scratch) / "firestore.log"
        with open(log_file, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if started is not None:
            started(process)
        emulator = Emulator(host, process)
        try:
            wait_until_ready(emulator, timeout)
        except EmulatorError as error:
            emulator.stop()
            if "Address already in use" in log_file.read_text(errors="replace"):
                raise PortTaken(f"port {port} was taken: {error}") from None
            raise
        except BaseException:
            emulator.stop()
            raise
    return emulator


def wait_until_ready(emulator: Emulator, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emulator.process is not None and emulator.process.poll() is not None:
            raise EmulatorError(f"the Firestore emulator exited with code {emulator.process.returncode}")
        try:
            with urllib.request.urlopen(emulator.url + "/", timeout=2) as response:
                if response.read().strip() == b"Ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise EmulatorError(f"the Firestore emulator did not answer at {emulator.url} within {timeout:.0f}s")

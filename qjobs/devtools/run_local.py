"""`make run`: the Firestore emulator and the service, with Upstash's development keys.

Stops both on Ctrl-C (or SIGTERM), whichever way the service ends.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from qjobs.config import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from qjobs.devtools.emulator import EmulatorError, start_emulator

DEV_KEYS = {
    "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
    "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
}
LOCAL_PROJECT = "local-project"
EMULATOR_HOST_FILE = ".emulator/host"
"""Where `make run` leaves its emulator's address, for the other local tools."""


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


def usage(port: int, emulator_host: str) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
Service:   {base}  (health: {base}/health)
Firestore: emulator at {emulator_host}, project {LOCAL_PROJECT}
Send a job from another terminal:
  .venv/bin/python -m qjobs.sign {base}/api/jobs/notify-collaborators \\
    '{{"tripId":"trip-1","event":"trip_updated","collaboratorIds":["u1","u2"],"message":"Dates moved"}}'
  .venv/bin/python -m qjobs.devtools.seed      # a sample conversation c1 of user u1
  .venv/bin/python -m qjobs.sign {base}/api/jobs/memory-sync \\
    '{{"userId":"u1","conversationId":"c1","syncType":"incremental"}}'
Press Ctrl-C to stop both.
"""


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    Path(".emulator").mkdir(exist_ok=True)
    try:
        emulator = start_emulator(log_path=Path(".emulator/firestore.log"))
    except EmulatorError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    Path(EMULATOR_HOST_FILE).write_text(emulator.host)
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
    print(usage(port, emulator.host), flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        return 0
    finally:
        emulator.stop()
        Path(EMULATOR_HOST_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())

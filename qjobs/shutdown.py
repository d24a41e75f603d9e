"""Leaving gracefully when Cloud Run sends SIGTERM (ten seconds before it kills the instance).

Runs still going when the grace period ends would hold their leases until they expire, and
QStash's next retry would be answered `409` for minutes. So the instance stops taking
jobs, waits briefly for runs in flight, then gives the leases of the others back (their
later commits are then refused by the ledger's fence) and flushes its logs.

gunicorn (which functions-framework runs) installs its own SIGTERM handler in each worker,
after the app module was imported in the master; there is no hook for an app to add to it.
`install_worker_hook` therefore wraps the worker classes' `handle_exit` before the fork.
The wrapper hands gunicorn the signal only once the drain is over: until then the worker
keeps accepting connections, so a delivery that arrives meanwhile is answered
`503 shutting_down` at once instead of waiting in the listen queue and being reset when
the worker exits.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker

from qjobs.logs import flush_logs

log = logging.getLogger(__name__)


class ActiveRuns:
    """The claims this process is running now, with a way to give them all back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, Callable[[], object]] = {}
        self._next = 0

    def add(self, release: Callable[[], object]) -> int:
        with self._lock:
            self._next += 1
            self._runs[self._next] = release
            return self._next

    def remove(self, key: int) -> None:
        with self._lock:
            self._runs.pop(key, None)

    def count(self) -> int:
        with self._lock:
            return len(self._runs)

    def release_all(self) -> int:
        with self._lock:
            releases = list(self._runs.values())
            self._runs.clear()
        for release in releases:
            try:
                release()
            except Exception:
                log.exception("could not release a lease at shutdown")
        return len(releases)


class Shutdown:
    def __init__(self, active: ActiveRuns, grace_seconds: float) -> None:
        self.active = active
        self.grace_seconds = grace_seconds
        self.draining = threading.Event()

    def begin(self, then: Callable[[], object] = lambda: None) -> None:
        """Called from the signal handler: must return at once. `then` runs after the drain
        (gunicorn's own stop, which closes the worker to new connections)."""
        if self.draining.is_set():
            return
        self.draining.set()
        threading.Thread(target=self._drain, args=(then,), name="shutdown-drain", daemon=True).start()

    def _drain(self, then: Callable[[], object]) -> None:
        try:
            deadline = time.monotonic() + self.grace_seconds
            while self.active.count() and time.monotonic() < deadline:
                time.sleep(0.05)
            released = self.active.release_all()
            log.warning(
                "shutting down",
                extra={"json_fields": {"event": "shutdown", "releasedLeases": released}},
            )
            flush_logs()
        finally:
            then()


def install_worker_hook(on_sigterm: Callable[[Callable[[], object]], None]) -> None:
    """Make gunicorn's workers call `on_sigterm(then)` on SIGTERM, `then` being gunicorn's own
    handling, which `on_sigterm` must call once it has drained (from any thread)."""
    for worker_class in (Worker, ThreadWorker):
        original = worker_class.__dict__["handle_exit"]
        if getattr(original, "__wrapped_by_qjobs__", False):
            original = original.__wrapped__

        def handle_exit(self: Any, sig: int, frame: Any, _original: Any = original) -> None:
            on_sigterm(lambda: _original(self, sig, frame))

        handle_exit.__wrapped__ = original  # type: ignore[attr-defined]
        handle_exit.__wrapped_by_qjobs__ = True  # type: ignore[attr-defined]
        worker_class.handle_exit = handle_exit

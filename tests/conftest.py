"""Registers the shared fixtures (they live in tests/support.py, with the helpers), marks
the tests that need the Firestore emulator, keeps each test's environment and logging to
itself, and chooses the property tests' profile."""

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.loop import loop, mailbox_emptied
from tests.support import client, db, deliver, emulator, make_client, service_env

__all__ = ["client", "db", "deliver", "emulator", "loop", "mailbox_emptied", "make_client", "service_env"]

settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
"""Property tests explore afresh on a developer's machine (a failure prints the blob that
reproduces it) and run the same examples every time in CI (`.ci/run` sets CI)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the emulator, however indirectly, is marked `emulator`, so that
    `make test-fast` (`-m "not emulator and not processes"`) runs without Java."""
    for item in items:
        if "emulator" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.emulator)


@pytest.fixture(autouse=True)
def isolated_environment() -> Iterator[None]:
    """Whatever a test does to os.environ is undone after it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    """An app a test builds routes the root logger to the stream of that moment, which may be
    the test's own captured output (capsys), closed when the test ends: a later test's log
    record would then print "Logging error" into whatever that test reads."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

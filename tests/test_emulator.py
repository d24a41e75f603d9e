"""The emulator runner: a port taken between being chosen and being bound is retried on
another (a real race: the emulator's own WebSocket server may take it)."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qjobs.devtools import emulator as runner
from qjobs.devtools.emulator import PortTaken, free_port, start_emulator

pytestmark = [pytest.mark.processes, pytest.mark.timeout(180)]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_free_port_taken_before_the_emulator_binds_it_is_replaced(
    taken_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    offered = iter([taken_port, free_port()])
    monkeypatch.setattr(runner, "free_port", lambda: next(offered))
    started = start_emulator(log_path=tmp_path / "firestore.log")
    try:
        assert started.host != f"127.0.0.1:{taken_port}"
        started.clear("any-project")
    finally:
        started.stop()


def test_a_port_asked_for_by_number_is_not_replaced(taken_port: int) -> None:
    with pytest.raises(PortTaken, match=str(taken_port)):
        start_emulator(port=taken_port)

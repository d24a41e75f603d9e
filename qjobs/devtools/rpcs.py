"""Counting Firestore round trips where the client library makes them, for the RPC-budget
tests and the benchmark.

Every Firestore call of the Python client goes through one `_GapicCallable` per method;
wrapping its `__call__` counts each RPC once, whatever layer above made it (a plain read,
a transaction's begin, read or commit, a query). Documents read are the ones a
`BatchGetDocuments` asks for (Firestore bills a read for a missing document too), the one
of a `GetDocument` and the ones a `RunQuery` returns; documents written are a `Commit`'s
writes.
"""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from google.api_core.gapic_v1 import method


@dataclass
class RpcLog:
    """What the process sent to Firestore while counting."""

    calls: Counter[str] = field(default_factory=Counter)
    documents_read: int = 0
    documents_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.documents_read = self.documents_written = 0

    def _record(self, name: str, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.calls[name] += 1
            self.documents_read += read
            self.documents_written += written

    def _count_read(self, count: int) -> None:
        with self._lock:
            self.documents_read += count


class _CountedStream:
    """A server stream that counts the documents it yields and is otherwise the stream."""

    def __init__(self, stream: Any, log: RpcLog) -> None:
        self._stream = stream
        self._log = log

    def __iter__(self) -> "_CountedStream":
        return self

    def __next__(self) -> Any:
        response = next(self._stream)
        if getattr(response, "document", None) and response.document.name:
            self._log._count_read(1)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def rpc_name(callable_: Any) -> str:
    """`Commit` for the callable that sends `/google.firestore.v1.Firestore/Commit`."""
    target = getattr(callable_._target, "__wrapped__", callable_._target)
    name = getattr(target, "_method", b"?")
    text = name.decode() if isinstance(name, bytes) else str(name)
    return text.rsplit("/", 1)[-1]


@contextmanager
def counting_rpcs() -> Iterator[RpcLog]:
    """Count every Firestore RPC this process makes inside the block, on any thread."""
    log = RpcLog()
    original = method._GapicCallable.__call__

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = rpc_name(self)
        request = args[0] if args else kwargs.get("request")
        documents = list(getattr(request, "documents", None) or [])
        writes = list(getattr(request, "writes", None) or [])
        read = len(documents) if name == "BatchGetDocuments" else int(name == "GetDocument")
        log._record(name, read=read, written=len(writes))
        response = original(self, *args, **kwargs)  # type: ignore[no-untyped-call]
        return _CountedStream(response, log) if name == "RunQuery" else response

    method._GapicCallable.__call__ = counted  # type: ignore[method-assign]
    try:
        yield log
    finally:
        method._GapicCallable.__call__ = original  # type: ignore[method-assign]

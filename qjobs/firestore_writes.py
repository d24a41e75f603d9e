"""Write protobufs built directly, for the documents the service writes on every delivery.

The client library builds each write through proto-plus, about 0.2 ms of CPU per document;
a delivery writes eight or more, which made marshalling the largest share of its CPU. The
raw protobuf classes build the same message in a tenth of the time. Only what the service
writes is built here: maps, lists and scalars under plain field names, and the transforms
`SERVER_TIMESTAMP` and `Increment` at the top level; anything else returns None and the
caller goes through the library. tests/test_firestore_writes.py checks, document by
document, that the message is the one the library builds.
"""

import datetime
import re
from collections.abc import Mapping
from typing import Any

from google.cloud import firestore
from google.cloud._helpers import _datetime_to_pb_timestamp
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.transforms import Increment
from google.cloud.firestore_v1.types import write as write_types

_WRITE = write_types.Write.pb()
_TRANSFORM = write_types.DocumentTransform.FieldTransform.pb()
_SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REQUEST_TIME = _TRANSFORM.ServerValue.REQUEST_TIME


class _Unsupported(Exception):
    """A value this module does not build: the library will."""


def set_write(ref: DocumentReference, data: Mapping[str, Any], *, merge: bool = False, create: bool = False) -> Any:
    """The proto-plus `Write` of `set(data, merge=merge)` or `create(data)`, or None."""
    pb = _WRITE()
    pb.update.name = ref._document_path
    try:
        leaves = _encode_fields(data, pb)
    except _Unsupported:
        return None
    if merge:
        pb.update_mask.field_paths.extend(sorted(leaves))
        if not leaves:
            pb.update_mask.SetInParent()
    if create:
        pb.current_document.exists = False
    return write_types.Write.wrap(pb)


def fenced_update(ref: DocumentReference, fields: Mapping[str, Any], update_time: Any) -> Any:
    """The proto-plus `Write` of `update(fields)` that applies only while the document's
    update time is still `update_time` (top-level fields only), or None."""
    if not all(_SIMPLE_NAME.fullmatch(name) for name in fields):
        return None
    pb = _WRITE()
    pb.update.name = ref._document_path
    try:
        for name, value in fields.items():
            _encode(value, pb.update.fields[name])
    except _Unsupported:
        return None
    pb.update_mask.field_paths.extend(sorted(fields))
    pb.current_document.update_time.CopyFrom(_timestamp(update_time))
    return write_types.Write.wrap(pb)


def _encode_fields(data: Mapping[str, Any], pb: Any) -> list[str]:
    """Fill the write's fields and top-level transforms; the leaf field paths (for a merge mask)."""
    leaves: list[str] = []
    for name, value in data.items():
        if not isinstance(name, str) or not _SIMPLE_NAME.fullmatch(name):
            raise _Unsupported(name)
        if value is firestore.SERVER_TIMESTAMP:
            transform = pb.update_transforms.add()
            transform.field_path = name
            transform.set_to_server_value = _REQUEST_TIME
        elif isinstance(value, Increment):
            transform = pb.update_transforms.add()
            transform.field_path = name
            _encode(value.value, transform.increment)
        else:
            _encode(value, pb.update.fields[name])
            leaves.extend(_leaf_paths(name, value))
    return leaves


def _leaf_paths(path: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for name, inner in value.items() for leaf in _leaf_paths(f"{path}.{_name(name)}", inner)]
    return [path]


def _name(name: Any) -> str:
    if not isinstance(name, str) or not _SIMPLE_NAME.fullmatch(name):
        raise _Unsupported(name)
    return name


def _encode(value: Any, out: Any) -> None:
    """`value` into the raw `Value` message `out`, as the library encodes it."""
    if value is None:
        out.null_value = 0
    elif isinstance(value, bool):
        out.boolean_value = value
    elif isinstance(value, int):
        out.integer_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, datetime.datetime):
        out.timestamp_value.CopyFrom(_timestamp(value))
    elif isinstance(value, dict):
        fields = out.map_value.fields
        out.map_value.SetInParent()
        for name, inner in value.items():
            _encode(inner, fields[_name(name)])
    elif isinstance(value, list):
        out.array_value.SetInParent()
        for inner in value:
            _encode(inner, out.array_value.values.add())
    else:
        raise _Unsupported(type(value).__name__)


def _timestamp(value: datetime.datetime) -> Any:
    """The library's own conversion, nanoseconds included for a time read from Firestore."""
    if hasattr(value, "timestamp_pb"):
        return value.timestamp_pb()
    return _datetime_to_pb_timestamp(value)  # type: ignore[no-untyped-call]

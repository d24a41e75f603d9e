"""A Firestore client whose every call gives up within a known time, and whose reads do not
start a thread each.

The library's defaults retry an unreachable server for one to five minutes per call, which
would hold a delivery (and a Cloud Run request slot) far longer than QStash's own retry
would take. Calls that accept `retry`/`timeout` get them explicitly (`RpcBudget.kwargs`);
the transaction's begin/commit/rollback take no such arguments, so the client's transport
is given the same bounded defaults for every method.

Every read (BatchGetDocuments, RunQuery) is a server stream, and gRPC serves a stream from a
"channel spin" thread it starts whenever no other call is in flight: about 0.7 ms of CPU per
read. gRPC's `SingleThreadedUnaryStream` channel option reads the stream on the calling
thread instead; a delivery consumes each stream to its end on its own thread, which is the
case that option is for.
"""

import threading
from dataclasses import dataclass
from typing import Any

import grpc
from google.api_core import exceptions, gapic_v1
from google.api_core import retry as retries
from google.cloud import firestore
from google.cloud.firestore_v1.base_client import _DEFAULT_CHANNEL_OPTIONS, _GRPC_MSG_SIZE_OPTIONS
from google.cloud.firestore_v1.services.firestore import client as firestore_client
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

READS_ON_CALLING_THREAD = ((grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),)


@dataclass(frozen=True)
class RpcBudget:
    """How long one Firestore call may take, retries included."""

    seconds: float

    def retry(self) -> retries.Retry:
        return retries.Retry(
            predicate=retries.if_exception_type(exceptions.ServiceUnavailable),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=self.seconds,
        )

    def kwargs(self) -> dict[str, Any]:
        return {"retry": self.retry(), "timeout": self.seconds}


class BoundedClient(firestore.Client):
    """`firestore.Client` with every RPC's default retry and timeout replaced by a budget,
    on a channel that reads server streams on the calling thread."""

    def __init__(self, budget: RpcBudget, project: str | None = None) -> None:
        super().__init__(project=project)
        self.budget = budget
        self._api_lock = threading.Lock()

    @property
    def _firestore_api(self) -> Any:
        """Made once, under a lock: deliveries arriving together at a new instance would
        otherwise each make a channel, and all but one be closed under their calls."""
        if self._firestore_api_internal is None:
            with self._api_lock:
                if self._firestore_api_internal is None:
                    self._firestore_api_internal = self._make_api()
        return self._firestore_api_internal

    def _make_api(self) -> Any:
        transport = FirestoreGrpcTransport(host=self._target, channel=self._channel())
        self._bound(transport)
        self._transport = transport
        firestore_client._client_info = self._client_info  # type: ignore[attr-defined]
        return firestore_client.FirestoreClient(transport=transport, client_options=self._client_options)

    def _channel(self) -> grpc.Channel:
        """The channel the library would make (the emulator's, or production's with its
        keepalive), with reads on the calling thread."""
        if self._emulator_host is not None:
            token = getattr(self._credentials, "id_token", None) or "owner"
            options = [("Authorization", f"Bearer {token}"), *_GRPC_MSG_SIZE_OPTIONS, *READS_ON_CALLING_THREAD]
            return grpc.insecure_channel(self._emulator_host, options=options)
        channel: grpc.Channel = FirestoreGrpcTransport.create_channel(
            self._target, credentials=self._credentials, options=[*_DEFAULT_CHANNEL_OPTIONS, *READS_ON_CALLING_THREAD]
        )
        return channel

    def _bound(self, transport: FirestoreGrpcTransport) -> None:
        transport._wrapped_methods = {
            raw: gapic_v1.method.wrap_method(  # type: ignore[no-untyped-call]
                raw,
                default_retry=self.budget.retry(),
                default_timeout=self.budget.seconds,
                client_info=self._client_info,
            )
            for raw in transport._wrapped_methods
        }

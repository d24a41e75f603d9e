"""A Firestore client whose every call gives up within a known time.

The library's defaults retry an unreachable server for one to five minutes per call, which
would hold a delivery (and a Cloud Run request slot) far longer than QStash's own retry
would take. Calls that accept `retry`/`timeout` get them explicitly (`RpcBudget.kwargs`);
the transaction's begin/commit/rollback take no such arguments, so the client's transport
is given the same bounded defaults for every method.
"""

from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions, gapic_v1
from google.api_core import retry as retries
from google.cloud import firestore


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
    """`firestore.Client` with every RPC's default retry and timeout replaced by a budget."""

    def __init__(self, budget: RpcBudget, project: str | None = None) -> None:
        super().__init__(project=project)
        self.budget = budget
        self._bounded = False

    @property
    def _firestore_api(self) -> Any:
        api = super()._firestore_api
        if not self._bounded:
            transport = api._transport
            transport._wrapped_methods = {
                raw: gapic_v1.method.wrap_method(  # type: ignore[no-untyped-call]
                    raw,
                    default_retry=self.budget.retry(),
                    default_timeout=self.budget.seconds,
                    client_info=self._client_info,
                )
                for raw in transport._wrapped_methods
            }
            self._bounded = True
        return api

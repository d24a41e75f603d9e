"""An entry point like main.py with one extra job whose behaviour the payload chooses, so
tests can make a job fail, sleep or page on demand through the real pipeline."""

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import functions_framework
from google.cloud import firestore
from google.cloud.firestore_v1.transaction import Transaction
from pydantic import BaseModel

from handlers import ROUTES
from qjobs.app import build_entry_point
from qjobs.errors import PermanentJobError
from qjobs.jobs import JobContext, JobResult, JobSpec, Write

PROBE_PATH = "/api/jobs/probe"


class ProbePayload(BaseModel):
    marker: str
    mode: Literal["ok", "fail", "permanent", "sleep", "sleep_first", "pages"] = "ok"
    seconds: float = 0
    pages: int = 0
    pagesBy: Literal["commit", "transaction"] = "commit"


def probe(payload: ProbePayload, ctx: JobContext) -> JobResult:
    """Each run leaves a `runs` document at once (like an external side effect), then
    hands back an increment of `counters/{marker}` for the final commit."""
    ctx.db.collection("runs").add({"marker": payload.marker, "attempt": ctx.attempt, "pid": os.getpid()}, **ctx.rpc)
    if payload.mode in ("sleep", "sleep_first") and (payload.mode == "sleep" or ctx.attempt == 1):
        time.sleep(payload.seconds)
    if payload.mode == "fail":
        raise RuntimeError("probe failure")
    if payload.mode == "permanent":
        raise PermanentJobError("probe_rejected", "the probe refuses this payload")
    for page in range(payload.pages):
        ref = ctx.db.collection("pages").document(f"{payload.marker}-{page}")
        write = Write(ref, {"page": page, "attempt": ctx.attempt})
        if payload.pagesBy == "transaction":
            ctx.transact_page(page_of(write))
        else:
            ctx.commit_page([write])
    counter = ctx.db.collection("counters").document(payload.marker)
    result: dict[str, Any] = {"marker": payload.marker, "attempt": ctx.attempt}
    return JobResult(result=result, writes=[Write(counter, {"runs": firestore.Increment(1)}, merge=True)])


def page_of(write: Write) -> Callable[[Transaction], tuple[list[Write], None]]:
    """A page transaction that reads nothing and commits one write."""
    return lambda transaction: ([write], None)


class ProbeResult(BaseModel):
    marker: str
    attempt: int


PROBE = JobSpec(name="probe", payload_model=ProbePayload, result_model=ProbeResult, run=probe)

jobs = functions_framework.http(build_entry_point({**ROUTES, PROBE_PATH: PROBE}))

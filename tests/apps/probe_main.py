"""An entry point like main.py with one extra job whose behaviour the payload chooses, so
tests can make a job fail, sleep or page on demand through the real pipeline.

In the `pure_*` modes the probe is a job whose effects are only Firestore writes (done in
the claiming transaction); in the others it proceeds under a claim, and each run first
leaves a `runs` document at once, like an external side effect.
"""

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import functions_framework
from google.cloud import firestore
from pydantic import BaseModel

from handlers import ROUTES
from qjobs.app import build_entry_point
from qjobs.errors import PermanentJobError
from qjobs.jobs import Done, JobContext, JobResult, JobSpec, Proceed, ReadContext, Reads, StepContext, Write

PROBE_PATH = "/api/jobs/probe"


class ProbePayload(BaseModel):
    marker: str
    mode: Literal["ok", "fail", "permanent", "sleep", "sleep_first", "pages", "pure", "pure_fail", "pure_permanent"] = (
        "ok"
    )
    seconds: float = 0
    pages: int = 0
    pagesBy: Literal["commit", "transaction"] = "commit"


def counter_increment(ctx: ReadContext | StepContext | JobContext, marker: str) -> Write:
    return Write(ctx.db.collection("counters").document(marker), {"runs": firestore.Increment(1)}, merge=True)


def reads(payload: ProbePayload, ctx: ReadContext) -> list[Any]:
    return [ctx.db.collection("counters").document(payload.marker)]


def step(payload: ProbePayload, ctx: StepContext) -> Done | Proceed:
    if payload.mode == "pure_fail":
        raise RuntimeError("probe failure")
    if payload.mode == "pure_permanent":
        raise PermanentJobError("probe_rejected", "the probe refuses this payload")
    if payload.mode == "pure":
        return Done([counter_increment(ctx, payload.marker)], {"marker": payload.marker, "attempt": ctx.attempt.number})
    return Proceed([])


def finish(payload: ProbePayload, state: Any, ctx: JobContext) -> JobResult:
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
    result: dict[str, Any] = {"marker": payload.marker, "attempt": ctx.attempt}
    return JobResult(result=result, writes=[counter_increment(ctx, payload.marker)])


def page_of(write: Write) -> Callable[[Reads], tuple[list[Write], None]]:
    """A page transaction that reads nothing and commits one write."""
    return lambda reads: ([write], None)


class ProbeResult(BaseModel):
    marker: str
    attempt: int


PROBE = JobSpec(
    name="probe", payload_model=ProbePayload, result_model=ProbeResult, reads=reads, step=step, finish=finish
)

jobs = functions_framework.http(build_entry_point({**ROUTES, PROBE_PATH: PROBE}))

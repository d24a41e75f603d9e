"""One module per job (its payload model and its logic, exposed as `JOB`), and the table
that routes each job's path to it. A new job is one module and one line here."""

from typing import Any

from handlers import memory_sync, notify_collaborators
from qjobs.jobs import JobSpec

ROUTES: dict[str, JobSpec[Any]] = {
    "/api/jobs/notify-collaborators": notify_collaborators.JOB,
    "/api/jobs/memory-sync": memory_sync.JOB,
}

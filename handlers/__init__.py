"""One module per job (its payload model and its logic, exposed as `JOB`), and the table
that routes each job's path to it. A new job is one module and one line here.

A job's module is imported on its first delivery, not at start-up: an instance that
Cloud Run starts for one job does not pay for importing the others before it answers.
"""

from qjobs.jobs import JobRoutes

NOTIFY_COLLABORATORS = "/api/jobs/notify-collaborators"
MEMORY_SYNC = "/api/jobs/memory-sync"
FAILURE_CALLBACK = "/api/jobs/failed"

ROUTES = JobRoutes(
    {
        NOTIFY_COLLABORATORS: "handlers.notify_collaborators",
        MEMORY_SYNC: "handlers.memory_sync",
        FAILURE_CALLBACK: "handlers.failure_callback",
    }
)

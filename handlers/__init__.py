"""One module per job (its payload model and its logic, exposed as `JOB`), and the table
that routes each job's path to it. A new job is one module and one line here.

A job's module is imported on its first delivery, not at start-up: an instance that
Cloud Run starts for one job does not pay for importing the others before it answers.
"""

from qjobs.jobs import JobRoutes

ROUTES = JobRoutes(
    {
        "/api/jobs/notify-collaborators": "handlers.notify_collaborators",
        "/api/jobs/memory-sync": "handlers.memory_sync",
    }
)

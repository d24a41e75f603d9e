"""`qjobs` against the emulator: reading the ledger, erasing a user, usage, and the indexes
its queries need. Publishing and the dead-letter queue, which need the broker and the
service, are in test_cli_loop.py."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from qjobs.cli import parser
from qjobs.cli.jobs import list_query
from tests.cli import one_line_error, qjobs
from tests.support import MEMORY, NOTIFY, ROOT, Deliver, new_message_id

FAILED = "/api/jobs/failed"
Capture = pytest.CaptureFixture[str]


def notify(**fields: Any) -> dict[str, Any]:
    return {"tripId": "trip-1", "event": "trip_updated", "collaboratorIds": ["u1", "u2"], "message": "Moved", **fields}


def conversation(db: firestore.Client, conversation_id: str, user_id: str, *lines: str) -> None:
    db.collection("conversations").document(conversation_id).set({"userId": user_id})
    start = datetime(2026, 5, 1, tzinfo=UTC)
    for n, line in enumerate(lines):
        ref = db.collection("conversations", conversation_id, "messages").document(f"m{n:05d}")
        ref.set({"role": "user", "content": line, "createdAt": start + timedelta(minutes=n)})


def delivered(deliver: Deliver, path: str, payload: dict[str, Any]) -> str:
    message_id = new_message_id()
    answer = deliver(path, payload, message_id=message_id)
    assert answer.status_code < 500, answer.json
    return message_id


# --- jobs show / list ------------------------------------------------------------------


def test_jobs_show_prints_the_ledger_entry_and_its_dead_letter_record(
    deliver: Deliver, db: firestore.Client, capsys: Capture
) -> None:
    message_id = delivered(deliver, NOTIFY, notify())
    report = {"status": 500, "retried": 3, "maxRetries": 3, "sourceMessageId": message_id, "url": "https://x" + NOTIFY}
    delivered(deliver, FAILED, report)
    shown = qjobs(capsys, "jobs", "show", message_id, "--json").json()
    assert shown["ledger"]["status"] == "succeeded" and shown["ledger"]["job"] == "notify-collaborators"
    assert shown["ledger"]["result"]["notified"] == 2
    assert shown["deadLetter"]["status"] == 500 and shown["deadLetter"]["job"] == "notify-collaborators"
    assert shown["ledger"]["updatedAt"].endswith("Z"), "times in RFC 3339"
    readable = qjobs(capsys, "jobs", "show", message_id)
    assert readable.status == 0 and f"message {message_id}" in readable.out
    assert "  status: succeeded" in readable.out and "dead letter:" in readable.out


def test_jobs_show_of_a_message_refused_before_the_ledger_shows_its_dead_letter_only(
    deliver: Deliver, db: firestore.Client, capsys: Capture
) -> None:
    refused = new_message_id()
    delivered(deliver, FAILED, {"status": 489, "sourceMessageId": refused, "url": "https://x" + MEMORY})
    shown = qjobs(capsys, "jobs", "show", refused)
    assert shown.status == 0 and "ledger: none" in shown.out and "  job: memory-sync" in shown.out


def test_jobs_show_of_an_unknown_message_fails_in_one_line(db: firestore.Client, capsys: Capture) -> None:
    assert "no ledger entry and no dead-letter record for msg_nope" in one_line_error(
        qjobs(capsys, "jobs", "show", "msg_nope")
    )


def test_jobs_list_filters_by_job_status_and_time_newest_first(
    deliver: Deliver, db: firestore.Client, capsys: Capture
) -> None:
    first = delivered(deliver, NOTIFY, notify())
    second = delivered(deliver, NOTIFY, notify(tripId="trip-2"))
    gone = delivered(deliver, MEMORY, {"userId": "u1", "conversationId": "gone", "syncType": "full"})
    listed = qjobs(capsys, "jobs", "list", "--json").json()
    assert [row["messageId"] for row in listed] == [gone, second, first]
    assert (listed[0]["status"], listed[0]["error"]) == ("rejected", "conversation_not_found")
    assert [
        row["messageId"] for row in qjobs(capsys, "jobs", "list", "--job=notify-collaborators", "--json").json()
    ] == [
        second,
        first,
    ]
    assert [row["messageId"] for row in qjobs(capsys, "jobs", "list", "--status=rejected", "--json").json()] == [gone]
    both = qjobs(capsys, "jobs", "list", "--job=memory-sync", "--status=succeeded", "--json").json()
    assert both == []
    assert len(qjobs(capsys, "jobs", "list", "--since=1h", "--limit=2", "--json").json()) == 2
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert "no ledger entries match" in qjobs(capsys, "jobs", "list", f"--since={tomorrow}").out


def test_jobs_list_prints_a_table(deliver: Deliver, db: firestore.Client, capsys: Capture) -> None:
    message_id = delivered(deliver, NOTIFY, notify())
    table = qjobs(capsys, "jobs", "list").out.splitlines()
    assert table[0].split() == ["messageId", "job", "status", "attempts", "updatedAt", "error"]
    assert table[1].split()[:4] == [message_id, "notify-collaborators", "succeeded", "1"]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--since=yesterday"], "--since must be an ISO 8601 time or an age"),
        (["--limit=0"], "--limit must be from 1 to 500"),
    ],
)
def test_jobs_list_refuses_a_bad_filter_in_one_line(argv: list[str], complaint: str, capsys: Capture) -> None:
    assert complaint in one_line_error(qjobs(capsys, "jobs", "list", *argv))


def test_without_credentials_it_says_how_to_get_them(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    assert "gcloud auth application-default login" in one_line_error(qjobs(capsys, "jobs", "show", "msg_x"))


def index_needed(query: Any) -> tuple[frozenset[str], tuple[tuple[str, str], ...]] | None:
    """The composite index a query needs (its equality fields, then its order), or None when
    single-field indexes serve it (no equality filter besides the ordered field)."""
    structured = query._to_protobuf()
    filters = structured.where.composite_filter.filters or [structured.where]
    equal = frozenset(
        f.field_filter.field.field_path for f in filters if f.field_filter.op == f.field_filter.Operator.EQUAL
    )
    order = tuple((o.field.field_path, o.direction.name) for o in structured.order_by)
    return (equal, order) if equal else None


def declared_indexes() -> set[tuple[str, frozenset[str], tuple[tuple[str, str], ...]]]:
    declared = json.loads((ROOT / "firestore.indexes.json").read_text())
    found = set()
    for index in declared["indexes"]:
        fields = index["fields"]
        ordered = tuple((f["fieldPath"], f.get("order") or f["arrayConfig"]) for f in fields[-1:])
        found.add((index["collectionGroup"], frozenset(f["fieldPath"] for f in fields[:-1]), ordered))
    return found


@pytest.mark.parametrize("job", [None, "memory-sync"])
@pytest.mark.parametrize("status", [None, "failed"])
@pytest.mark.parametrize("since", [None, datetime(2026, 1, 1, tzinfo=UTC)])
def test_every_form_of_jobs_list_has_its_index_declared(job: str | None, status: str | None, since: Any) -> None:
    """The emulator serves any query; production refuses one without its composite index."""
    offline = AnonymousCredentials()  # type: ignore[no-untyped-call]
    collection = firestore.Client(project="p", credentials=offline).collection("jobs")
    needed = index_needed(list_query(collection, job=job, status=status, since=since, limit=5))
    if needed is not None:
        assert ("jobs", *needed) in declared_indexes()


# --- usage -----------------------------------------------------------------------------


def every_command(command: Any = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    command = command or parser()
    found = [prefix]
    for action in command._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found += every_command(sub, (*prefix, name))
    return found


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...], capsys: Capture) -> None:
    ran = qjobs(capsys, *command, "--help")
    assert ran.status == 0 and ran.out.startswith("usage: qjobs") and ran.err == ""


def test_jobs_list_help_says_which_jobs_never_show_running(capsys: Capture) -> None:
    assert "never shows `running`" in " ".join(qjobs(capsys, "jobs", "list", "--help").out.split())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["jobs", "list", "--status=lost"],
        ["jobs", "list", "--limit=many"],
        ["publish", "memory-sync", "--user-id=u1"],
        ["publish", "notify-collaborators", "--event=trip_exploded"],
        ["dlq", "show"],
        ["erase-user"],
    ],
    ids=" ".join,
)
def test_bad_usage_exits_2_and_changes_nothing(argv: list[str], capsys: Capture) -> None:
    ran = qjobs(capsys, *argv)
    assert ran.status == 2 and ran.out == "" and "usage: qjobs" in ran.err


def test_printing_data_has_a_json_form_wherever_it_prints_data(capsys: Capture) -> None:
    for command in every_command():
        if (command and command[-1] in ("show", "list", "send", "replay", "delete", "erase-user")) or (
            len(command) == 2 and command[0] == "publish"
        ):
            assert "--json" in qjobs(capsys, *command, "--help").out, command

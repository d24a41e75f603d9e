"""`qjobs` against the emulator: reading the ledger, erasing a user, usage, and the indexes
its queries need. Publishing and the dead-letter queue, which need the broker and the
service, are in test_cli_loop.py."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from qstash import QStash
from qstash.message import PublishResponse

from qjobs.cli import parser
from qjobs.cli.common import Environment
from qjobs.cli.erase import REMOVED
from qjobs.cli.jobs import list_query
from qjobs.config import DEV_CURRENT_SIGNING_KEY
from qjobs.devtools.broker import DEV_TOKEN, start_broker
from qjobs.devtools.emulator import Emulator, free_port
from qjobs.devtools.run_local import ENV_FILE
from qjobs.signature import verify_signature
from tests.cli import bad_usage, one_line_error, qjobs
from tests.receivers import QStashRecorder, ScriptedReceiver
from tests.support import MEMORY, NOTIFY, PROJECT, ROOT, AppFactory, Deliver, new_message_id, wait_until

FAILED = "/api/jobs/failed"
Capture = pytest.CaptureFixture[str]
NOTIFY_FLAGS = ["--trip-id=trip-1", "--event=trip_updated", "--collaborator-ids", "u1", "u2", "--message=Moved"]
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CAMEL_CASE = re.compile(r"[a-z][A-Za-z0-9]*")
LOCAL_RUN_VARIABLES = ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "QSTASH_URL", "QSTASH_TOKEN", "JOBS_BASE_URL")


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in a folder of its own, so that the `.emulator/env` of a `make run` in
    the checkout is never what a command reads."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
    assert (listed[0]["status"], listed[0]["lastError"]["code"]) == ("rejected", "conversation_not_found")
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


QJOBS = Path(sys.executable).with_name("qjobs")
"""The console script `make` installs, as an operator runs it."""


@pytest.mark.processes
@pytest.mark.parametrize("argv", [["jobs", "list"], ["jobs", "show", "MESSAGE_ID"]], ids=" ".join)
def test_output_closed_before_it_was_all_printed_ends_quietly_with_141(
    argv: list[str], deliver: Deliver, db: firestore.Client
) -> None:
    """`qjobs jobs list | head -1`: what it could not print is dropped without a traceback,
    with the status a tool killed by SIGPIPE has (128 + 13), as `set -o pipefail` sees it."""
    message_id = delivered(deliver, NOTIFY, notify())
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [str(QJOBS), *(message_id if arg == "MESSAGE_ID" else arg for arg in argv)],
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr.decode()) == (141, "")


def test_jobs_list_json_has_one_error_field_and_camel_case_keys(
    deliver: Deliver, db: firestore.Client, capsys: Capture
) -> None:
    delivered(deliver, MEMORY, {"userId": "u1", "conversationId": "gone", "syncType": "full"})
    (row,) = qjobs(capsys, "jobs", "list", "--json").json()
    assert "error" not in row and row["lastError"]["code"] == "conversation_not_found"
    assert all(CAMEL_CASE.fullmatch(key) for key in keys_of(row)), sorted(keys_of(row))


def keys_of(data: Any) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(data, dict):
        return set(data).union(*(keys_of(value) for value in data.values()))
    if isinstance(data, list):
        return set().union(*(keys_of(value) for value in data))
    return set()


# --- failed, retrying ------------------------------------------------------------------


def webhook_down(make_client: AppFactory) -> FlaskClient:
    """The service with its webhook channel pointing at a closed port: every
    notify-collaborators attempt fails (500 job_failed) and is left for QStash's retry."""
    down = f"http://127.0.0.1:{free_port()}/hooks"
    return make_client(COLLABORATOR_WEBHOOK_URL=down, COLLABORATOR_WEBHOOK_SECRET=WEBHOOK_SECRET)


def failed_attempt(deliver: Deliver, down: FlaskClient, *, retried: int) -> str:
    message_id = new_message_id()
    answer = deliver(NOTIFY, notify(tripId=f"trip-{retried}"), message_id=message_id, retried=retried, test_client=down)
    assert answer.status_code == 500, answer.json
    return message_id


def dead_lettered(deliver: Deliver, message_id: str) -> None:
    """QStash's failure callback for the message: QStash gave up on it."""
    delivered(deliver, FAILED, {"status": 500, "sourceMessageId": message_id, "url": "https://x" + NOTIFY})


def test_a_failed_attempt_qstash_will_retry_reads_retrying_and_failed_is_final(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, capsys: Capture
) -> None:
    down = webhook_down(make_client)
    given_up = failed_attempt(deliver, down, retried=0)
    dead_lettered(deliver, given_up)
    last_retry = failed_attempt(deliver, down, retried=3)
    retrying = failed_attempt(deliver, down, retried=1)

    rows = {
        row["messageId"]: row for row in qjobs(capsys, "jobs", "list", "--job=notify-collaborators", "--json").json()
    }
    assert [rows[message_id]["status"] for message_id in (given_up, last_retry, retrying)] == [
        "failed",
        "failed",
        "retrying",
    ]
    updated = datetime.fromisoformat(rows[retrying]["updatedAt"])
    assert datetime.fromisoformat(rows[retrying]["nextAttemptAt"]) == updated + timedelta(seconds=20), (
        "min(300000, 10000 * pow(2, retried)) ms after the attempt of Upstash-Retried 1"
    )
    assert rows[given_up]["nextAttemptAt"] is None and rows[last_retry]["nextAttemptAt"] is None

    table = {line.split()[0]: line.split() for line in qjobs(capsys, "jobs", "list").out.splitlines()[1:]}
    assert (table[retrying][2], table[last_retry][2], table[given_up][2]) == ("retrying", "failed", "failed")

    shown = " ".join(qjobs(capsys, "jobs", "show", retrying).out.split())
    assert "status: retrying" in shown and "QStash retries it: retry 2 of 3, due about" in shown
    assert "QStash gave up" in " ".join(qjobs(capsys, "jobs", "show", given_up).out.split())
    final = " ".join(qjobs(capsys, "jobs", "show", last_retry).out.split())
    assert "its last retry (3 of 3) failed: QStash gives up" in final
    shown_json = qjobs(capsys, "jobs", "show", retrying, "--json").json()
    assert (shown_json["status"], shown_json["ledger"]["status"]) == ("retrying", "failed")


def test_jobs_list_filters_by_retrying_and_failed_and_still_fills_its_limit(
    deliver: Deliver, make_client: AppFactory, db: firestore.Client, capsys: Capture
) -> None:
    down = webhook_down(make_client)
    given_up = failed_attempt(deliver, down, retried=0)
    dead_lettered(deliver, given_up)
    last_retry = failed_attempt(deliver, down, retried=3)
    first, second = failed_attempt(deliver, down, retried=0), failed_attempt(deliver, down, retried=2)

    def listed(*argv: str) -> list[str]:
        return [row["messageId"] for row in qjobs(capsys, "jobs", "list", *argv, "--json").json()]

    assert listed("--status=retrying") == [second, first]
    assert listed("--status=failed") == [last_retry, given_up]
    assert listed("--status=failed", "--limit=1") == [last_retry], "the newer retrying entries are passed over"
    assert listed("--status=retrying", "--job=notify-collaborators", "--limit=1") == [second]


# --- unreachable parts -----------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[str]:
    """host:port of a socket that takes connections (into its backlog) and never answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        yield f"127.0.0.1:{listening.getsockname()[1]}"


@contextmanager
def closed_port() -> Iterator[str]:
    yield f"127.0.0.1:{free_port()}"


UNREACHABLE = {"closed port": closed_port, "silent server": silent_server}
FIRESTORE_COMMANDS = [["jobs", "list"], ["jobs", "show", "msg_x"], ["erase-user", "u1", "--yes"]]
QSTASH_COMMANDS = [["dlq", "list"], ["dlq", "show", "1-x"], ["publish", "notify-collaborators", *NOTIFY_FLAGS]]
BOUND_SECONDS = 8
"""Well under the default timeout (10 s) and the clients' own retry loops (32 s to 5 min):
with QJOBS_TIMEOUT_SECONDS=1 a command must give up well within it, even on a loaded machine."""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("part", UNREACHABLE)
@pytest.mark.parametrize("argv", FIRESTORE_COMMANDS, ids=" ".join)
def test_an_unreachable_firestore_fails_within_the_timeout_in_one_line(
    argv: list[str], part: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UNREACHABLE[part]() as host:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        monkeypatch.setenv("QJOBS_TIMEOUT_SECONDS", "1")
        started = time.monotonic()
        error = one_line_error(qjobs(capsys, *argv))
        assert time.monotonic() - started < BOUND_SECONDS
    assert f"cannot reach the Firestore emulator at {host} (FIRESTORE_EMULATOR_HOST) within 1 s" in error


@pytest.mark.timeout(90)
@pytest.mark.parametrize("part", UNREACHABLE)
@pytest.mark.parametrize("argv", QSTASH_COMMANDS, ids=" ".join)
def test_an_unreachable_qstash_fails_within_the_timeout_in_one_line(
    argv: list[str], part: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UNREACHABLE[part]() as host:
        monkeypatch.setenv("QSTASH_URL", f"http://{host}")
        monkeypatch.setenv("QSTASH_TOKEN", "token")
        monkeypatch.setenv("JOBS_BASE_URL", "https://jobs.example.test")
        monkeypatch.setenv("QJOBS_TIMEOUT_SECONDS", "1")
        started = time.monotonic()
        error = one_line_error(qjobs(capsys, *argv))
        assert time.monotonic() - started < BOUND_SECONDS
    if part == "silent server":
        assert (
            f"cannot reach QStash at http://{host} (QSTASH_URL) within 1 s (QJOBS_TIMEOUT_SECONDS): no answer" in error
        )
    else:
        assert f"could not reach QStash at http://{host} (QSTASH_URL): " in error and "Connection refused" in error
        assert "within" not in error, "a refused connection is not a timeout"


def test_the_timeout_defaults_to_10_seconds() -> None:
    assert Environment({}).timeout_seconds() == 10


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_timeout_setting_is_bad_usage(value: str, capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QJOBS_TIMEOUT_SECONDS", value)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    assert "QJOBS_TIMEOUT_SECONDS must be a number of seconds above 0" in bad_usage(qjobs(capsys, "jobs", "list"))


def test_without_credentials_it_says_how_to_get_them(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    error = one_line_error(qjobs(capsys, "jobs", "show", "msg_x"))
    assert "gcloud auth application-default login" in error and ".emulator/env" not in error


def leave_env_file_of_make_run(folder: Path, emulator: Emulator) -> None:
    """The `.emulator/env` a `make run` in `folder` writes, its emulator being `emulator`."""
    (folder / ENV_FILE).parent.mkdir()
    (folder / ENV_FILE).write_text(
        f"QSTASH_URL=http://127.0.0.1:{free_port()}\nQSTASH_TOKEN=token\nJOBS_BASE_URL=http://127.0.0.1:{free_port()}\n"
        f"FIRESTORE_EMULATOR_HOST={emulator.host}\nGOOGLE_CLOUD_PROJECT={PROJECT}\n"
    )


def test_with_none_of_its_variables_set_it_uses_the_make_run_of_the_folder_and_says_so(
    deliver: Deliver, emulator: Emulator, db: firestore.Client, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = delivered(deliver, NOTIFY, notify())
    leave_env_file_of_make_run(Path.cwd(), emulator)
    for name in LOCAL_RUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ran = qjobs(capsys, "jobs", "list", "--json")
    assert ran.status == 0 and [row["messageId"] for row in ran.json()] == [message_id], ran
    note = "qjobs: none of FIRESTORE_EMULATOR_HOST, QSTASH_URL, QSTASH_TOKEN, JOBS_BASE_URL is set: using .emulator/env"
    assert ran.err.startswith(note) and len(ran.err.splitlines()) == 1, ran.err


def test_with_one_of_its_variables_set_the_file_is_not_read_and_the_error_points_at_it(
    emulator: Emulator, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of one place and half of another is no place: the variables are read as they are,
    and the failure says how to use the run of this folder."""
    leave_env_file_of_make_run(Path.cwd(), emulator)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("QSTASH_TOKEN", "token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    for argv in (["jobs", "list"], ["erase-user", "u1", "--yes"]):
        error = one_line_error(qjobs(capsys, *argv))
        assert "no Google credentials for Firestore" in error and "`export $(cat .emulator/env)`" in error, error


def test_without_a_token_it_says_where_one_comes_from(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSTASH_TOKEN", raising=False)
    monkeypatch.setenv("QSTASH_URL", f"http://127.0.0.1:{free_port()}")
    error = one_line_error(qjobs(capsys, "dlq", "list"))
    assert "QSTASH_TOKEN is required" in error and "`export $(cat .emulator/env)`" in error, error
    assert "prints" not in error, "make run prints no token"


def test_send_without_the_service_url_says_which_to_set(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a guess at a local port: an operator always knows where a delivery went."""
    monkeypatch.delenv("JOBS_BASE_URL", raising=False)
    error = one_line_error(qjobs(capsys, "send", NOTIFY, "--body", "{}"))
    assert "--service" in error and "JOBS_BASE_URL" in error and "127.0.0.1:8080" not in error, error


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


def test_publish_help_says_what_each_job_does(capsys: Capture) -> None:
    listed = " ".join(qjobs(capsys, "publish", "--help").out.split())
    for job in ("notify-collaborators", "memory-sync"):
        assert f"{job} {job}" not in listed and re.search(rf" {job} (\S+ ){{4}}", listed), listed


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


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["jobs", "list", "--limit=0"], "argument --limit: must be from 1 to 500, not '0'"),
        (["jobs", "list", "--since=yesterday"], "argument --since: must be an ISO 8601 time or an age such as 2h"),
        (["jobs", "list", "--job=nope"], "argument --job: invalid choice: 'nope'"),
        (["dlq", "list", "--count=0"], "argument --count: must be from 1 to 100, not '0'"),
        (["send", NOTIFY, "--body", "not json"], "argument --body: not JSON and not a readable file"),
        (["send", NOTIFY, "--body", "/no/such/file.json"], "argument --body: not JSON and not a readable file"),
        (["send", NOTIFY, "--body", "{}", "--retried=-1"], "argument --retried: must be 0 or more, not '-1'"),
        (["send", NOTIFY, "--body", "{}", "--timeout=0"], "argument --timeout: must be a number of seconds above 0"),
        (["dlq", "show", "1/../../v2/queues"], "argument DLQ_ID: '1/../../v2/queues' is not a safe id"),
        (["dlq", "delete", "1?cursor=2"], "argument DLQ_ID: '1?cursor=2' is not a safe id"),
        (["dlq", "replay", "1#x"], "argument DLQ_ID: '1#x' is not a safe id"),
        (["jobs", "show", "bad id!"], "argument MESSAGE_ID: 'bad id!' is not a safe id"),
        (
            ["send", NOTIFY[1:], "--body", "{}"],
            f"argument PATH: must start with /, as {MEMORY} does, not {NOTIFY[1:]!r}",
        ),
        (
            ["publish", "memory-sync", "--user-id=bad id", "--conversation-id=c1", "--sync-type=full"],
            "argument --user-id: must be 1-128 letters, digits or _ - . : @",
        ),
        (["publish", "notify-collaborators", *NOTIFY_FLAGS, "--message= "], "argument --message: String should have"),
        (
            ["publish", "notify-collaborators", *NOTIFY_FLAGS[:3], "u1", "not an id!", "--message=Moved"],
            "argument --collaborator-ids: must be 1-128 letters, digits or _ - . : @",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_bad_value_is_bad_usage(argv: list[str], complaint: str, capsys: Capture) -> None:
    assert complaint in bad_usage(qjobs(capsys, *argv))


def test_erase_user_refuses_an_id_that_is_not_a_safe_id_and_erases_nothing(
    db: firestore.Client, capsys: Capture
) -> None:
    db.collection("users").document("u1").set({"name": "Ada"})
    complaint = bad_usage(qjobs(capsys, "erase-user", "bad id!", "--yes"))
    assert "argument USER_ID: 'bad id!' is not a safe id" in complaint
    assert db.collection("users").document("u1").get().exists


def test_erase_user_json_keys_are_camel_case(db: firestore.Client, capsys: Capture) -> None:
    db.collection("users").document("u1").set({"name": "Ada"})
    erased = qjobs(capsys, "erase-user", "u1", "--yes", "--json").json()
    assert all(CAMEL_CASE.fullmatch(key) for key in keys_of(erased)), sorted(keys_of(erased))
    assert erased["removed"]["userDocuments"] == 1


def test_erase_user_json_has_one_shape_whatever_was_left(db: firestore.Client, capsys: Capture) -> None:
    """Every count, zeros included: a script reads `removed.tripEventsCaused` whether or not
    the user caused any."""
    db.collection("users").document("u1").collection("companions").document("c").set({"name": "Bo"})
    first = qjobs(capsys, "erase-user", "u1", "--yes", "--json").json()
    assert first == {"userId": "u1", "removed": {**dict.fromkeys(REMOVED, 0), "userDocuments": 1}}
    again = qjobs(capsys, "erase-user", "u1", "--yes", "--json").json()
    assert again == {"userId": "u1", "removed": dict.fromkeys(REMOVED, 0)}
    assert set(REMOVED) == {
        "conversationDocuments",
        "userDocuments",
        "tripEventsReceived",
        "tripEventsCaused",
        "notificationsCaused",
    }, "the keys docs/operations.md lists"


@pytest.fixture
def qstash_recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[QStashRecorder]:
    """QStash as a recorder of what was sent to it."""
    recorder = QStashRecorder()
    monkeypatch.setenv("QSTASH_URL", recorder.url)
    monkeypatch.setenv("QSTASH_TOKEN", "token")
    monkeypatch.setenv("JOBS_BASE_URL", "https://jobs.example.test")
    yield recorder
    recorder.stop()


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("--delay=soon", "argument --delay: must be seconds or a duration such as 10m or 2h, not 'soon'"),
        ("--not-before=yesterday", "argument --not-before: must be Unix seconds or an ISO 8601 time, not 'yesterday'"),
    ],
)
def test_publish_checks_when_to_deliver_before_sending_anything(
    option: str, complaint: str, qstash_recorder: QStashRecorder, capsys: Capture
) -> None:
    assert complaint in bad_usage(qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS, option))
    assert qstash_recorder.received == []


def test_publish_sends_a_delay_and_a_time_as_qstash_reads_them(
    qstash_recorder: QStashRecorder, capsys: Capture
) -> None:
    for option in ("--delay=90", "--delay=90m", "--not-before=2030-01-01T00:00:00", "--not-before=1893456000"):
        assert qjobs(capsys, "publish", "notify-collaborators", *NOTIFY_FLAGS, option).status == 0
    sent = [
        (request.headers.get("upstash-delay"), request.headers.get("upstash-not-before"))
        for request in qstash_recorder.received
    ]
    assert sent == [("90s", None), ("90m", None), (None, "1893456000"), (None, "1893456000")], (
        "an ISO 8601 time without a zone is UTC"
    )


def parents_and_children() -> list[tuple[tuple[str, ...], Any, Any]]:
    """(command, its parser, its parent's parser) for every command under another."""
    found = []

    def walk(command: Any, prefix: tuple[str, ...]) -> None:
        for action in command._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    found.append(((*prefix, name), sub, command))
                    walk(sub, (*prefix, name))

    walk(parser(), ())
    return found


COMMANDS_UNDER_OTHERS = parents_and_children()


@pytest.mark.parametrize(
    ("command", "own", "parent"), COMMANDS_UNDER_OTHERS, ids=[" ".join(found[0]) for found in COMMANDS_UNDER_OTHERS]
)
def test_a_command_help_says_what_it_does_not_what_its_parent_does(
    command: tuple[str, ...], own: Any, parent: Any, capsys: Capture
) -> None:
    shown = " ".join(qjobs(capsys, *command, "--help").out.split())
    assert own.description and " ".join(parent.description.split()) not in shown


# --- promises of docs/operations.md ------------------------------------------------------


def ledger_entry(db: firestore.Client, message_id: str, updated: datetime, **fields: Any) -> None:
    """A ledger entry as the service writes it (the parts `jobs` reads)."""
    entry = {"job": "notify-collaborators", "status": "succeeded", "attempts": 1, "retried": 0, "updatedAt": updated}
    db.collection("jobs").document(message_id).set({**entry, **fields})


def test_jobs_list_breaks_ties_by_message_id_newest_first_and_reads_a_zoneless_time_as_utc(
    db: firestore.Client, capsys: Capture
) -> None:
    """Entries updated at the same instant (decided): by message id, descending, as Firestore
    orders the rest of the key; the order holds across the pages the list reads."""
    noon = datetime(2026, 6, 1, 12, tzinfo=UTC)
    for message_id in ("msg_b", "msg_d", "msg_a", "msg_c"):
        ledger_entry(db, message_id, noon)
    ledger_entry(db, "msg_earlier", noon - timedelta(seconds=1))

    def listed(*argv: str) -> list[str]:
        return [row["messageId"] for row in qjobs(capsys, "jobs", "list", *argv, "--json").json()]

    assert listed() == ["msg_d", "msg_c", "msg_b", "msg_a", "msg_earlier"]
    assert listed("--limit=2") == ["msg_d", "msg_c"]
    assert listed("--since=2026-06-01T12:00:00") == ["msg_d", "msg_c", "msg_b", "msg_a"], "no zone: UTC"
    assert listed("--since=2026-06-01T14:00:00+02:00") == ["msg_d", "msg_c", "msg_b", "msg_a"]


@pytest.mark.parametrize(("age", "seconds"), [("30m", 1800), ("2h", 7200), ("3d", 259200)])
def test_jobs_list_since_an_age(db: firestore.Client, capsys: Capture, age: str, seconds: int) -> None:
    now = datetime.now(UTC)
    ledger_entry(db, "msg_inside", now - timedelta(seconds=seconds - 60))
    ledger_entry(db, "msg_outside", now - timedelta(seconds=seconds + 60))
    rows = qjobs(capsys, "jobs", "list", f"--since={age}", "--json").json()
    assert [row["messageId"] for row in rows] == ["msg_inside"]


def test_a_failure_callbacks_own_failed_entry_stays_failed(db: firestore.Client, capsys: Capture) -> None:
    """Its retries are QStash's to decide, not a policy's: `failed`, and `jobs show` says QStash may retry it."""
    ledger_entry(db, "msg_report", datetime.now(UTC), job="failure-callback", status="failed")
    (row,) = qjobs(capsys, "jobs", "list", "--json").json()
    assert (row["status"], row["nextAttemptAt"]) == ("failed", None)
    assert "QStash may retry it" in " ".join(qjobs(capsys, "jobs", "show", "msg_report").out.split())


def test_jobs_reads_the_ledger_collection_the_service_writes(
    db: firestore.Client, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.collection("ledger-2").document("msg_elsewhere").set(
        {"job": "memory-sync", "status": "succeeded", "attempts": 1, "updatedAt": datetime.now(UTC)}
    )
    monkeypatch.setenv("LEDGER_COLLECTION", "ledger-2")
    assert [row["messageId"] for row in qjobs(capsys, "jobs", "list", "--json").json()] == ["msg_elsewhere"]
    assert qjobs(capsys, "jobs", "show", "msg_elsewhere", "--json").json()["ledger"]["job"] == "memory-sync"


@pytest.fixture
def service_recorder() -> Iterator[QStashRecorder]:
    """A service that records what it is sent (and answers 201)."""
    recorder = QStashRecorder()
    yield recorder
    recorder.stop()


def test_send_signs_what_it_sends_as_given_with_the_development_key_by_default(
    service_recorder: QStashRecorder, capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file is sent as it is (malformed on purpose, here); `--retried` sets `Upstash-Retried`;
    `--signed-url` is the URL signed; without QSTASH_CURRENT_SIGNING_KEY the development key signs."""
    monkeypatch.delenv("QSTASH_CURRENT_SIGNING_KEY", raising=False)
    body = tmp_path / "odd.json"
    body.write_bytes(b'{"not": "closed"')
    signed_for = "https://jobs.example.test/api/jobs/notify-collaborators"
    argv = ["--body", str(body), "--retried=2", f"--signed-url={signed_for}", f"--service={service_recorder.url}"]
    assert qjobs(capsys, "send", NOTIFY, *argv).status == 0
    (received,) = service_recorder.received
    assert received.path == NOTIFY and received.body == b'{"not": "closed"'
    assert received.headers["upstash-retried"] == "2"
    token = received.headers["upstash-signature"]
    verify_signature(token, body=received.body, url=signed_for, keys=[DEV_CURRENT_SIGNING_KEY], leeway=0)


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A broker whose dead-letter queue holds three messages (their ids, oldest first)."""
    running = start_broker(environ={})
    destination = ScriptedReceiver()
    destination.script.extend([(400, {})] * 3)
    try:
        client = QStash(DEV_TOKEN, base_url=running.url, retry=False)
        ids = []
        for n in range(3):
            sent = client.message.publish_json(url=destination.url, body={"n": n}, retries=0)
            assert isinstance(sent, PublishResponse)
            ids.append(sent.message_id)
            wait_until(lambda: len(running.broker.dead_letters) == len(ids), "dead-lettered")
        monkeypatch.setenv("QSTASH_URL", running.url)
        monkeypatch.setenv("QSTASH_TOKEN", DEV_TOKEN)
        yield ids
    finally:
        destination.stop()
        running.stop()


def test_dlq_list_pages_by_count_and_says_where_to_go_on(dead_letters: list[str], capsys: Capture) -> None:
    first = qjobs(capsys, "dlq", "list", "--count=2")
    lines = first.out.splitlines()
    assert [line.split()[1] for line in lines[1:3]] == dead_letters[:2]
    assert lines[-1].startswith("more: --cursor ")
    rest = qjobs(capsys, "dlq", "list", "--count=2", *lines[-1].removeprefix("more: ").split())
    assert [line.split()[1] for line in rest.out.splitlines()[1:]] == dead_letters[2:]
    assert "more:" not in rest.out

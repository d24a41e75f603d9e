"""Configuration is checked once, at start-up, and a bad one stops the service."""

import subprocess
import sys

import pytest
from google.cloud import firestore

from qjobs.config import DEV_SIGNING_KEYS, ConfigError, load_settings, region_env_prefix
from tests.support import CURRENT_KEY, MAIN, NOTIFY, NOTIFY_PAYLOAD, ROOT, AppFactory, encode, qstash_headers

DEV_KEY = sorted(DEV_SIGNING_KEYS)[0]
CLOUD_RUN = {"K_SERVICE": "jobs", "PUBLIC_BASE_URL": "https://jobs-abc-uc.a.run.app"}


def error_for(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    return str(caught.value)


def test_defaults() -> None:
    settings = load_settings({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY})
    assert settings.max_body_bytes == 262144
    assert settings.clock_tolerance_seconds == 30
    assert settings.job_lease_seconds == 300
    assert settings.ledger_collection == "jobs"
    assert settings.ledger_retention_days == 7
    assert settings.notification_retention_days is None, "notifications are kept unless told otherwise"
    assert settings.default_keys().all() == (CURRENT_KEY,)


def test_missing_current_key_is_named() -> None:
    assert error_for({}) == "invalid configuration: QSTASH_CURRENT_SIGNING_KEY is required"


def test_empty_values_count_as_unset() -> None:
    assert "QSTASH_CURRENT_SIGNING_KEY is required" in error_for({"QSTASH_CURRENT_SIGNING_KEY": ""})


def test_every_problem_is_listed_on_one_line() -> None:
    message = error_for({"MAX_BODY_BYTES": "-1", "PUBLIC_BASE_URL": "https://x.test/", "LOG_LEVEL": "LOUD"})
    assert "\n" not in message
    for name in ("QSTASH_CURRENT_SIGNING_KEY", "MAX_BODY_BYTES", "PUBLIC_BASE_URL", "LOG_LEVEL"):
        assert name in message


@pytest.mark.parametrize("days", ["0", "-3", "a month"])
def test_a_retention_that_is_not_a_positive_number_is_refused(days: str) -> None:
    message = error_for({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "NOTIFICATION_RETENTION_DAYS": days})
    assert "NOTIFICATION_RETENTION_DAYS" in message


def test_cloud_run_requires_public_base_url() -> None:
    message = error_for({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "K_SERVICE": "jobs"})
    assert "PUBLIC_BASE_URL is required on Cloud Run" in message


@pytest.mark.parametrize(
    "keys",
    [
        {"QSTASH_CURRENT_SIGNING_KEY": DEV_KEY},
        {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "QSTASH_NEXT_SIGNING_KEY": DEV_KEY},
        {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY": DEV_KEY},
    ],
    ids=["current", "next", "region"],
)
def test_dev_keys_are_refused_on_cloud_run(keys: dict[str, str]) -> None:
    assert "development signing key" in error_for({**keys, **CLOUD_RUN})
    assert load_settings({**keys, **CLOUD_RUN, "ALLOW_DEV_SIGNING_KEYS": "true"}).on_cloud_run
    assert not load_settings(keys).on_cloud_run


def test_region_keys_are_read_by_region_prefix() -> None:
    settings = load_settings(
        {
            "QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY,
            "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY": "sig_east_current",
            "US_EAST_1_QSTASH_NEXT_SIGNING_KEY": "sig_east_next",
        }
    )
    assert settings.keys_for_region("US-EAST-1").all() == ("sig_east_current", "sig_east_next")
    assert settings.keys_for_region("us-east-1").all() == ("sig_east_current", "sig_east_next")
    assert settings.keys_for_region("EU-CENTRAL-1").all() == (CURRENT_KEY,)
    assert settings.keys_for_region(None).all() == (CURRENT_KEY,)


def test_a_region_with_only_a_next_key_is_refused() -> None:
    message = error_for({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "US_EAST_1_QSTASH_NEXT_SIGNING_KEY": "sig_x"})
    assert "US_EAST_1" in message and "current" in message


def test_app_build_stops_with_one_line(make_client: AppFactory, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        make_client(QSTASH_CURRENT_SIGNING_KEY=None)
    assert caught.value.code == 2
    assert capsys.readouterr().err == "qjobs: invalid configuration: QSTASH_CURRENT_SIGNING_KEY is required\n"


@pytest.mark.processes
def test_the_server_refuses_to_start_on_cloud_run_with_dev_keys(service_env: dict[str, str]) -> None:
    env = {**service_env, **CLOUD_RUN, "QSTASH_CURRENT_SIGNING_KEY": DEV_KEY}
    command = [sys.executable, "-m", "functions_framework", "--target=jobs", f"--source={MAIN}", "--port=0"]
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert finished.returncode == 2
    assert len(finished.stderr.strip().splitlines()) == 1
    assert finished.stderr.startswith("qjobs: invalid configuration:")
    assert "development signing key" in finished.stderr


def test_every_default_the_readme_states() -> None:
    settings = load_settings({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY})
    assert settings.next_signing_key is None and settings.region_keys == {}
    assert settings.public_base_url is None and settings.allow_dev_signing_keys is False
    assert (settings.token_collection, settings.dead_letter_retention_days) == ("jobTokens", 30)
    assert (settings.firestore_timeout_seconds, settings.shutdown_grace_seconds) == (10, 7)
    assert (settings.log_level, settings.memory_sync_page_size) == ("INFO", 200)
    assert (settings.smtp_timeout_seconds, settings.webhook_timeout_seconds) == (10, 10)
    assert settings.smtp_server is None and settings.webhook_enabled is False and settings.trip_url_template is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"COLLABORATOR_WEBHOOK_URL": "https://hooks.example.test/trips"}, "COLLABORATOR_WEBHOOK_SECRET go together"),
        ({"COLLABORATOR_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "COLLABORATOR_WEBHOOK_URL and"),
        ({"MEMORY_SYNC_PAGE_SIZE": "0"}, "MEMORY_SYNC_PAGE_SIZE"),
        ({"MEMORY_SYNC_PAGE_SIZE": "201"}, "MEMORY_SYNC_PAGE_SIZE"),
    ],
    ids=["webhook-url-alone", "webhook-secret-alone", "page-size-0", "page-size-201"],
)
def test_a_channel_half_configured_or_a_page_size_out_of_range_stops_start_up(
    environ: dict[str, str], named: str
) -> None:
    assert named in error_for({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, **environ})


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        (
            {"SMTP_URL": "http://mail.example.test", "EMAIL_FROM": "trips@example.test"},
            "SMTP_URL must look like smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465",
        ),
        (
            {
                "COLLABORATOR_WEBHOOK_URL": "https://hooks.example.test/trips",
                "COLLABORATOR_WEBHOOK_SECRET": "whsec_!!!",
            },
            "COLLABORATOR_WEBHOOK_SECRET must be a Standard Webhooks secret (whsec_ + base64)",
        ),
    ],
    ids=["smtp-url", "webhook-secret"],
)
def test_a_channel_setting_that_cannot_work_stops_start_up(environ: dict[str, str], line: str) -> None:
    """The channels' modules are imported only by a service that uses them, and still check
    their settings at start-up."""
    assert error_for({"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, **environ}) == f"invalid configuration: {line}"


def test_a_service_without_channels_does_not_import_them_at_start_up() -> None:
    """smtplib, email and standardwebhooks belong to the channels, which notify-collaborators
    loads with its module on its first delivery: an instance started for another job does
    not wait for them."""
    code = (
        "import sys, functions_framework; functions_framework.create_app(target='jobs', source='main.py'); "
        "print(sorted(name for name in ('qjobs.channels.email', 'qjobs.channels.webhook') if name in sys.modules))"
    )
    env = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "GOOGLE_CLOUD_PROJECT": "test-project"}
    finished = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (finished.returncode, finished.stdout, finished.stderr) == (0, "[]\n", "")


def test_the_ledger_and_token_collections_are_the_configured_ones(
    make_client: AppFactory, db: firestore.Client
) -> None:
    client = make_client(LEDGER_COLLECTION="ledger-2", TOKEN_COLLECTION="tokens-2")
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body)
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 200
    entry = db.collection("ledger-2").document(headers["Upstash-Message-Id"]).get()
    assert entry.get("status") == "succeeded" and len(list(db.collection("tokens-2").stream())) == 1
    assert {"jobs", "jobTokens"}.isdisjoint(collection.id for collection in db.collections())


# ---------------------------------------------------------------- the one line, and region names


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        (
            {"MAX_BODY_BYTES": "-1", "PUBLIC_BASE_URL": "https://x.test/", "LOG_LEVEL": "LOUD"},
            "invalid configuration: QSTASH_CURRENT_SIGNING_KEY is required; PUBLIC_BASE_URL must be an absolute "
            "http(s) URL without a trailing slash; MAX_BODY_BYTES Input should be greater than 0; LOG_LEVEL must "
            "be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "US_EAST_1_QSTASH_NEXT_SIGNING_KEY": "sig_x"},
            "invalid configuration: region_keys.US_EAST_1.current is required",
        ),
        (
            {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "K_SERVICE": "jobs"},
            "invalid configuration: PUBLIC_BASE_URL is required on Cloud Run: the signed URL must not be derived "
            "from the client-controlled Host header",
        ),
    ],
    ids=["several", "nested", "whole-settings"],
)
def test_the_line_names_each_setting_with_its_problem_and_nothing_else(environ: dict[str, str], line: str) -> None:
    """What the operator reads at start-up: each problem once, after the setting it is about,
    without pydantic's "Value error," prefix, separated by semicolons."""
    assert error_for(environ) == line


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "US_EAST_1"),
        ("EU-CENTRAL-1", "EU_CENTRAL_1"),
        (" us-east-1 ", "US_EAST_1"),
        ("-x-ray.region_9-", "X_RAY_REGION_9"),
    ],
)
def test_a_region_names_its_variables_whatever_its_separators(region: str, prefix: str) -> None:
    """The `upstash-region` header's value, upper case, each run of other characters one
    underscore and none at either end: `{prefix}_QSTASH_CURRENT_SIGNING_KEY`."""
    assert region_env_prefix(region) == prefix
    settings = load_settings(
        {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, f"{prefix}_QSTASH_CURRENT_SIGNING_KEY": "sig_r"}
    )
    assert settings.keys_for_region(region).all() == ("sig_r",)

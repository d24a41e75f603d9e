"""Configuration, read from the environment once at start-up and validated as a whole.

A bad configuration stops the service before it accepts traffic, with one line that names
every problem, rather than failing deliveries one by one later.
"""

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from qjobs.channels.email import SmtpServer

DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
DEV_SIGNING_KEYS = frozenset({DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY})
"""Upstash's published local-development keys: anyone can sign with them."""

_REGION_KEY = re.compile(r"([A-Z0-9]+(?:_[A-Z0-9]+)*)_QSTASH_(CURRENT|NEXT)_SIGNING_KEY")

Seconds = Annotated[float, Field(gt=0)]


class ConfigError(Exception):
    """The environment does not describe a runnable service."""


class SigningKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    current: str = Field(min_length=1)
    next: str | None = None

    def all(self) -> tuple[str, ...]:
        return (self.current,) if self.next is None else (self.current, self.next)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    current_signing_key: str = Field(alias="QSTASH_CURRENT_SIGNING_KEY", min_length=1)
    next_signing_key: str | None = Field(None, alias="QSTASH_NEXT_SIGNING_KEY")
    region_keys: dict[str, SigningKeys] = Field(default_factory=dict)
    clock_tolerance_seconds: float = Field(30, alias="QSTASH_CLOCK_TOLERANCE_SECONDS", ge=0)
    public_base_url: str | None = Field(None, alias="PUBLIC_BASE_URL")
    k_service: str | None = Field(None, alias="K_SERVICE")
    allow_dev_signing_keys: bool = Field(False, alias="ALLOW_DEV_SIGNING_KEYS")
    max_body_bytes: int = Field(262144, alias="MAX_BODY_BYTES", gt=0)
    ledger_collection: str = Field("jobs", alias="LEDGER_COLLECTION", min_length=1)
    token_collection: str = Field("jobTokens", alias="TOKEN_COLLECTION", min_length=1)
    ledger_retention_days: float = Field(7, alias="LEDGER_RETENTION_DAYS", gt=0)
    dead_letter_retention_days: float = Field(30, alias="DEAD_LETTER_RETENTION_DAYS", gt=0)
    notification_retention_days: float | None = Field(None, alias="NOTIFICATION_RETENTION_DAYS", gt=0)
    job_lease_seconds: Seconds = Field(300, alias="JOB_LEASE_SECONDS")
    firestore_timeout_seconds: Seconds = Field(10, alias="FIRESTORE_TIMEOUT_SECONDS")
    shutdown_grace_seconds: float = Field(7, alias="SHUTDOWN_GRACE_SECONDS", ge=0)
    google_cloud_project: str | None = Field(None, alias="GOOGLE_CLOUD_PROJECT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    smtp_url: str | None = Field(None, alias="SMTP_URL", repr=False)
    email_from: str | None = Field(None, alias="EMAIL_FROM")
    email_unsubscribe_url: str | None = Field(None, alias="EMAIL_UNSUBSCRIBE_URL")
    trip_url_template: str | None = Field(None, alias="TRIP_URL_TEMPLATE")
    smtp_timeout_seconds: Seconds = Field(10, alias="SMTP_TIMEOUT_SECONDS")
    collaborator_webhook_url: str | None = Field(None, alias="COLLABORATOR_WEBHOOK_URL")
    collaborator_webhook_secret: str | None = Field(None, alias="COLLABORATOR_WEBHOOK_SECRET", repr=False)
    webhook_timeout_seconds: Seconds = Field(10, alias="WEBHOOK_TIMEOUT_SECONDS")
    memory_sync_page_size: int = Field(200, alias="MEMORY_SYNC_PAGE_SIZE", ge=1, le=200)

    @property
    def on_cloud_run(self) -> bool:
        return bool(self.k_service)

    def default_keys(self) -> SigningKeys:
        return SigningKeys(current=self.current_signing_key, next=self.next_signing_key)

    def keys_for_region(self, region: str | None) -> SigningKeys:
        """QStash signs with per-region keys on multi-region accounts; without keys for the
        delivery's region, the default pair applies."""
        if region:
            keys = self.region_keys.get(region_env_prefix(region))
            if keys is not None:
                return keys
        return self.default_keys()

    @field_validator("public_base_url")
    @classmethod
    def _base_url_is_origin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value) or value.endswith("/"):
            raise ValueError("must be an absolute http(s) URL without a trailing slash")
        return value

    @property
    def smtp_server(self) -> "SmtpServer | None":
        return _parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.collaborator_webhook_url and self.collaborator_webhook_secret)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_smtp_url(value)
        return value

    @field_validator("collaborator_webhook_secret")
    @classmethod
    def _webhook_secret_usable(cls, value: str | None) -> str | None:
        return None if value is None else _valid_webhook_secret(value)

    @field_validator("collaborator_webhook_url", "email_unsubscribe_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://\S+", value):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("trip_url_template")
    @classmethod
    def _makes_trip_links(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s{}]+(\{tripId\}[^\s{}]*)+", value):
            raise ValueError(
                "must be an absolute http(s) URL holding {tripId}, e.g. https://app.example/trips/{tripId}"
            )
        return value

    @model_validator(mode="after")
    def _channels_complete(self) -> "Settings":
        if self.smtp_url and not self.email_from:
            raise ValueError("EMAIL_FROM is required when SMTP_URL is set")
        if bool(self.collaborator_webhook_url) != bool(self.collaborator_webhook_secret):
            raise ValueError("COLLABORATOR_WEBHOOK_URL and COLLABORATOR_WEBHOOK_SECRET go together")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _safe_on_cloud_run(self) -> "Settings":
        if not self.on_cloud_run:
            return self
        if self.public_base_url is None:
            raise ValueError(
                "PUBLIC_BASE_URL is required on Cloud Run: the signed URL must not be "
                "derived from the client-controlled Host header"
            )
        if not self.allow_dev_signing_keys and self._uses_dev_key():
            raise ValueError(
                "a published Upstash development signing key is configured; refuse it on "
                "Cloud Run (set ALLOW_DEV_SIGNING_KEYS=true only for a throwaway deployment)"
            )
        return self

    def _uses_dev_key(self) -> bool:
        slots = [self.default_keys(), *self.region_keys.values()]
        return any(key in DEV_SIGNING_KEYS for pair in slots for key in pair.all())


def _parse_smtp_url(url: str) -> "SmtpServer":
    # A channel's module (smtplib, email; standardwebhooks) is imported by a service that
    # uses the channel, and otherwise not at start-up.
    from qjobs.channels.email import parse_smtp_url  # noqa: PLC0415

    return parse_smtp_url(url)


def _valid_webhook_secret(secret: str) -> str:
    from qjobs.channels.webhook import valid_secret  # noqa: PLC0415

    return valid_secret(secret)


def region_env_prefix(region: str) -> str:
    """`us-east-1` in the `upstash-region` header names `US_EAST_1_...` variables."""
    return re.sub(r"[^A-Z0-9]+", "_", region.upper()).strip("_")


def load_settings(environ: Mapping[str, str]) -> Settings:
    values = {name: value for name, value in environ.items() if value != ""}
    try:
        return Settings.model_validate({**values, "region_keys": _region_keys(values)})
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None


def _region_keys(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    regions: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        match = _REGION_KEY.fullmatch(name)
        if match:
            regions.setdefault(match.group(1), {})[match.group(2).lower()] = value
    return regions


def _one_line(error: ValidationError) -> str:
    problems = []
    for issue in error.errors():
        where = ".".join(str(part) for part in issue["loc"])
        text = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "missing":
            text = "is required"
        problems.append(f"{where} {text}" if where else text)
    return "invalid configuration: " + "; ".join(problems)

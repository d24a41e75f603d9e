"""Which channels are on, from the service's settings."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qjobs.channels.email import EmailChannel
from qjobs.channels.webhook import WebhookChannel

if TYPE_CHECKING:
    from qjobs.config import Settings


@dataclass(frozen=True)
class Channels:
    email: EmailChannel | None
    webhook: WebhookChannel | None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Channels":
        server, sender = settings.smtp_server, settings.email_from
        url, secret = settings.collaborator_webhook_url, settings.collaborator_webhook_secret
        return cls(
            email=EmailChannel(
                server,
                sender,
                settings.email_unsubscribe_url,
                settings.smtp_timeout_seconds,
                trip_url_template=settings.trip_url_template,
            )
            if server and sender
            else None,
            webhook=WebhookChannel(url, secret, settings.webhook_timeout_seconds) if url and secret else None,
        )

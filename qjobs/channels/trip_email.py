"""The email a collaborator receives about a trip event: a subject, plain text and HTML.

Everything a person reads in it is untrusted text: the producer's message and title, and
names and titles the app wrote in Firestore. Jinja2 renders both parts, and escapes
everything in the HTML one (autoescape); the subject, the one header made of such text,
is made a single line first, so that nothing in a name or a title can start a header. No
internal id is shown: the trip is named by its title, people by their display names, and
a missing one is left out of the wording, never replaced by an id.

The templates live here rather than in files: the image installs the package without its
data files, and a module cannot go missing from it.
"""

import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

TITLE_LIMIT = 80
NAME_LIMIT = 60

SUBJECTS: dict[str, tuple[str, str]] = {
    "trip_created": ("{actor} created {trip}", "{Trip} was created"),
    "trip_updated": ("{actor} updated {trip}", "{Trip} was updated"),
    "trip_shared": ("{actor} shared {trip} with you", "{Trip} was shared with you"),
    "trip_deleted": ("{actor} deleted {trip}", "{Trip} was deleted"),
    "collaborator_added": ("{actor} added a collaborator to {trip}", "A collaborator joined {trip}"),
    "collaborator_removed": ("{actor} removed a collaborator from {trip}", "A collaborator left {trip}"),
    "collaborator_role_changed": (
        "{actor} changed a collaborator\u2019s role on {trip}",
        "A collaborator\u2019s role changed on {trip}",
    ),
}
"""event -> (the headline when the actor's name is known, the headline without it)."""

FALLBACK_SUBJECTS = ("{actor} changed {trip}", "{Trip} changed")

TEXT_TEMPLATE = """\
Hi{% if recipient_name %} {{ recipient_name }}{% endif %},

{{ headline }}.

{{ message }}
{% if trip_url %}

Open the trip: {{ trip_url }}
{% endif %}

You received this email because you {{ "were" if deleted else "are" }} a collaborator on {{ trip }}.
{% if unsubscribe_url %}
Unsubscribe from these emails: {{ unsubscribe_url }}
{% endif %}
"""

HTML_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title>
</head>
<body style="margin:0;padding:24px;font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;">
<p>Hi{% if recipient_name %} {{ recipient_name }}{% endif %},</p>
<p><strong>{{ headline }}.</strong></p>
<p>{% for line in message_lines %}{{ line }}{% if not loop.last %}<br>{% endif %}{% endfor %}</p>
{% if trip_url %}
<p><a href="{{ trip_url }}" style="color:#2563eb;">Open the trip</a></p>
{% endif %}
<hr style="border:none;border-top:1px solid #e4e7eb;margin:24px 0;">
<p style="font-size:13px;color:#616e7c;">You received this email because you {{ "were" if deleted else "are" }} \
a collaborator on {{ trip }}.
{% if unsubscribe_url %}
<a href="{{ unsubscribe_url }}" style="color:#616e7c;">Unsubscribe from these emails</a>.
{% endif %}
</p>
</body>
</html>
"""

TEMPLATES = Environment(
    loader=DictLoader({"trip_event.txt": TEXT_TEMPLATE, "trip_event.html": HTML_TEMPLATE}),
    autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)
"""Escaping is on for every template but the plain-text one, whose reader sees text as it is."""


@dataclass(frozen=True)
class TripEmail:
    """What one recipient's email tells. Names and titles may be anything a document held
    (None, a number, a line break): `render` makes display text of them."""

    event: str
    message: str
    trip_title: object = None
    actor_name: object = None
    recipient_name: object = None
    trip_url: str | None = None
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render(email: TripEmail) -> RenderedEmail:
    """The subject (one line), the plain-text part and the HTML part of `email`."""
    title = display_text(email.trip_title, TITLE_LIMIT)
    actor = display_text(email.actor_name, NAME_LIMIT)
    subject = headline(email.event, title, actor)
    deleted = email.event == "trip_deleted"
    message = "\n".join(readable(line) for line in email.message.splitlines())
    values = {
        "subject": subject,
        "headline": subject,
        "recipient_name": display_text(email.recipient_name, NAME_LIMIT),
        "message": message,
        "message_lines": message.split("\n"),
        "trip": quoted(title) if title else "this trip",
        "trip_url": None if deleted else email.trip_url,
        "unsubscribe_url": email.unsubscribe_url,
        "deleted": deleted,
    }
    return RenderedEmail(
        subject=subject,
        text=TEMPLATES.get_template("trip_event.txt").render(values),
        html=TEMPLATES.get_template("trip_event.html").render(values),
    )


def headline(event: str, title: str | None, actor: str | None) -> str:
    """`Maya shared “Lisbon” with you`; `A trip was updated` when neither is known."""
    with_actor, without_actor = SUBJECTS.get(event, FALLBACK_SUBJECTS)
    trip = quoted(title) if title else "a trip"
    if actor:
        return with_actor.format(actor=actor, trip=trip)
    return without_actor.format(Trip=trip[0].upper() + trip[1:], trip=trip)


def quoted(title: str) -> str:
    return f"\u201c{title}\u201d"


def display_text(value: object, limit: int) -> str | None:
    """One line of at most `limit` characters from a name or title, or None when there is
    none: whitespace (line breaks included) becomes one space, other control characters
    go, and a longer text ends in an ellipsis."""
    if not isinstance(value, str):
        return None
    visible = "".join(char for char in value if unicodedata.category(char) != "Cc" or char.isspace())
    line = " ".join(visible.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "\u2026"
    return line or None


def readable(line: str) -> str:
    """A line of a message without the control characters (but tabs) a reader cannot see."""
    return "".join(char for char in line if char == "\t" or unicodedata.category(char) != "Cc")


def trip_url(template: str | None, trip_id: str) -> str | None:
    """The link to a trip: `{tripId}` in TRIP_URL_TEMPLATE replaced by the id, percent-encoded
    (a safe id needs no encoding but a template's author need not know that)."""
    return template.replace("{tripId}", quote(trip_id, safe=":@")) if template else None

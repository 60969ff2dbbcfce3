"""Live pushes for incidents, after commit and best effort.

- ``incidents``: the incident's list row (the same for every viewer: no buttons in it);
  a new incident is inserted at the top of ``#incident-rows``.
- ``incident-<id>``: a tiny signal that makes the incident page re-GET its panel from the
  normal view, where the role check decides which buttons show.
"""

from django.template.loader import render_to_string
from django.utils.html import format_html

from console import live as console_live


def push_incident_on_commit(incident_id: int, *, created: bool = False) -> None:
    console_live.on_commit(lambda: push_incident(incident_id, created=created))


def incident_signal(incident_id: int) -> str:
    return format_html(
        '<div hx-swap-oob="innerHTML:#incident-signals"><div data-incident-id="{}" hx-get="/incidents/{}/panel/" '
        'hx-trigger="load" hx-target="#incident-panel" hx-swap="outerHTML"></div></div>',
        int(incident_id), int(incident_id))


def push_incident(incident_id: int, *, created: bool = False) -> None:
    from traces.incident_models import Incident

    incident = Incident.objects.select_related("agent").filter(pk=incident_id).first()
    if incident is None:
        return
    html = render_to_string("traces/incidents/partials/incident_row.html",
                            {"incident": incident, "oob": "new" if created else True})
    console_live.send_to_group("incidents", html)
    console_live.send_to_group(f"incident-{incident_id}", incident_signal(incident_id))

"""Watchers: anomaly detectors on the ingest stream and on periodic windows, remediation
playbooks, incidents and earned autonomy (issue 7). See ``stream``, ``jobs``, ``services``.

The ingest hook is :func:`spans_ingested_on_commit` (called from ``traces.services.ingest_spans``).
"""


def spans_ingested_on_commit(run_ids, seq_ranges=None, facts=None) -> None:
    """``facts``: run id -> (run row after the batch, the spans it inserted), so the detectors need not re-read them."""
    from traces.watchers import stream

    stream.spans_ingested_on_commit(run_ids, seq_ranges, facts)


def ready() -> None:
    """Live topics, navigation, the dashboard tile and admin registration (from TracesConfig.ready)."""
    from console import dashboard, live, navigation
    from console.roles import STAFF_ROLES, Role

    live.register_topic("incidents", live.any_role)
    live.register_topic("incident", live.any_role)
    navigation.register("Incidents", "incidents", *STAFF_ROLES, order=30)
    navigation.register("Autonomy", "autonomy", *STAFF_ROLES, order=31)
    from traces import incident_views

    dashboard.register_tile("traces/incidents/partials/tile_incidents.html", incident_views.tile_context, order=15)
    from traces.watchers import admin  # noqa: F401 - registers the models in Django's admin

"""Incident pages: who may read and act, acknowledge/undo/resolve through the views, the tile."""

import pytest

from agents.models import Agent
from console import dashboard
from console.models import AuditEntry
from tests.traces.test_watchers_support import watching  # noqa: F401
from traces.incident_models import DetectorConfig, DetectorKind, Incident
from traces.watchers import detectors, services
from traces.watchers.detectors import Finding

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident(agent, watching):
    DetectorConfig.objects.create(kind=DetectorKind.LOOP, actions=["pause", "require_approval"])
    detectors.invalidate_cache()
    return services.open_incident(finding=Finding(
        kind=DetectorKind.LOOP, agent_id=agent.pk, dedupe_key="k", title="Loop: <script>alert(1)</script>",
        trace_id="ab" * 16, evidence={"observed": 6, "threshold": 5, "span_ids": ["00aa11bb22cc33dd"],
                                      "pattern": ['lookup({"id": 1})']}))


READ = ["/incidents/", "/incidents/{pk}/", "/incidents/{pk}/panel/", "/autonomy/", "/incidents/detectors/"]


@pytest.mark.parametrize("path", READ)
@pytest.mark.parametrize("role,expected", [("anonymous", 302), ("none", 403), ("reviewer", 200), ("operator", 200),
                                           ("admin", 200)])
def test_staff_roles_read(clients_by_role, incident, path, role, expected):
    response = clients_by_role[role].get(path.format(pk=incident.pk))
    assert response.status_code == expected


ACT = [("post", "/incidents/{pk}/acknowledge/", {}), ("post", "/incidents/{pk}/resolve/", {"note": "ok"}),
       ("post", "/incidents/{pk}/actions/{action}/undo/", {})]


@pytest.mark.parametrize("method,path,data", ACT)
@pytest.mark.parametrize("role,allowed", [("anonymous", False), ("none", False), ("reviewer", False),
                                          ("operator", True), ("admin", True)])
def test_operators_and_admins_act(clients_by_role, incident, method, path, data, role, allowed):
    action = incident.actions.get(kind="pause")
    response = clients_by_role[role].post(path.format(pk=incident.pk, action=action.pk), data)
    if allowed:
        assert response.status_code == 302
    else:
        assert response.status_code in (302, 403)
        if response.status_code == 302:
            assert "/login/" in response["Location"]
        incident.refresh_from_db()
        assert incident.status == "open" and Agent.objects.get(pk=incident.agent_id).is_paused


def test_page_shows_evidence_escaped_and_buttons_by_role(clients_by_role, incident):
    html = clients_by_role["operator"].get(f"/incidents/{incident.pk}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert f'/runs/{"ab" * 16}/' in html and f'/runs/{"ab" * 16}/spans/00aa11bb22cc33dd/' in html
    assert "<svg" in html and "Undo" in html and "Resolve" in html
    assert f'ws-connect="/ws/live/incident-{incident.pk}/"' in html
    read_only = clients_by_role["reviewer"].get(f"/incidents/{incident.pk}/").content.decode()
    assert "Undo" not in read_only and "Resolve" not in read_only


def test_htmx_undo_returns_the_panel_and_audits(operator_client, incident, operator):
    action = incident.actions.get(kind="pause")
    response = operator_client.post(f"/incidents/{incident.pk}/actions/{action.pk}/undo/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="incident-panel"' in response.content.decode()
    assert not Agent.objects.get(pk=incident.agent_id).is_paused
    again = operator_client.post(f"/incidents/{incident.pk}/actions/{action.pk}/undo/", HTTP_HX_REQUEST="true")
    assert again.status_code == 409
    assert AuditEntry.objects.filter(action="incident.action_undone", actor="user:otto").count() == 1


def test_resolve_needs_a_note(operator_client, incident):
    response = operator_client.post(f"/incidents/{incident.pk}/resolve/", {"note": " "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "Say how it was resolved" in response.content.decode()
    operator_client.post(f"/incidents/{incident.pk}/resolve/", {"note": "tool fixed"})
    assert Incident.objects.get().status == "resolved"
    assert "tool fixed" in operator_client.get(f"/incidents/{incident.pk}/").content.decode()


def test_list_filters_by_status(reviewer_client, incident, operator):
    assert f"incident-row-{incident.pk}" in reviewer_client.get("/incidents/").content.decode()
    services.resolve_incident(incident_id=incident.pk, user=operator, note="done")
    assert f"incident-row-{incident.pk}" not in reviewer_client.get("/incidents/").content.decode()
    assert f"incident-row-{incident.pk}" in reviewer_client.get("/incidents/?status=resolved").content.decode()


def test_tile_works_without_a_user_and_counts_open_incidents(incident):
    from traces.incident_views import tile_context

    context = tile_context(None)
    assert context["incidents_open"] == 1
    html = dashboard.render_tile("traces/incidents/partials/tile_incidents.html", {**context, "oob": True})
    assert 'id="tile-incidents"' in html and 'data-testid="incidents-open"' in html


def test_only_admins_edit_detectors(clients_by_role, watching):
    data = {"kind": "loop", "agent": "", "enabled": "on", "params": '{"repeats": 3}', "actions": ["notify"]}
    assert clients_by_role["operator"].post("/incidents/detectors/", data).status_code == 403
    assert clients_by_role["admin"].post("/incidents/detectors/", data).status_code == 302
    assert detectors.settings_for("loop", None).params["repeats"] == 3
    bad = clients_by_role["admin"].post("/incidents/detectors/", {**data, "params": "[1"})
    assert bad.status_code == 400
    assert AuditEntry.objects.filter(action="detector.configured").count() == 1


def test_incidents_topics_admit_staff_only(reviewer, nobody):
    from console import live

    assert live.may_subscribe(reviewer, "incidents") and live.may_subscribe(reviewer, "incident-5")
    assert not live.may_subscribe(nobody, "incidents")


@pytest.mark.parametrize("kind,evidence,shown", [
    (DetectorKind.RUN_COST, {"observed": 5.764, "threshold": 0.0204}, ["$5.76", "$0.0204"]),
    (DetectorKind.LATENCY, {"observed": 2500.0, "baseline": 800.0}, ["2.50 s", "800 ms"]),
    (DetectorKind.ERROR_RATE, {"observed": 0.4, "baseline": 0.05}, ["40%", "5%"]),
    (DetectorKind.RUNAWAY, {"observed": 5400.0, "threshold": 3600, "measure": "seconds"}, ["1h 30m", "1h 0m"]),
    (DetectorKind.RUNAWAY, {"observed": 1200, "threshold": 1000, "measure": "spans"}, ["1200 spans", "1000 spans"]),
])
def test_evidence_numbers_carry_their_unit(clients_by_role, agent, watching, kind, evidence, shown):
    incident = services.open_incident(finding=Finding(kind=kind, agent_id=agent.pk, dedupe_key="u", title="t",
                                                      evidence=evidence))
    html = clients_by_role["operator"].get(f"/incidents/{incident.pk}/").content.decode()
    observed, base = shown
    assert f'<dd data-testid="observed">{observed}</dd>' in html and f"<dd>{base}</dd>" in html
    assert f"(left) {base} · observed (right) {observed}" in html  # the chart's caption too

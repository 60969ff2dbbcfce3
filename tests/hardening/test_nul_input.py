"""A NUL character (U+0000) anywhere in a request is bad input: 400 naming the field, never a 500.

PostgreSQL stores no NUL in text and no \\u0000 in jsonb, so before this every agent-sent string
with one (an action, a summary, an argument) and every such filter or id was a 500.
"""

import json

import pytest

from approvals.models import ApprovalRequest, Status
from traces.incident_models import Incident

pytestmark = pytest.mark.django_db


def _post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("body, field", [
    ({"action": "billing.a\u0000b", "risk": "high"}, "action"),
    ({"action": "billing.x", "risk": "high", "summary": "s\u0000"}, "summary"),
    ({"action": "billing.x", "risk": "high", "arguments": {"note": "a\u0000"}}, "arguments.note"),
    ({"action": "billing.x", "risk": "high", "arguments": {"k\u0000": 1}}, "arguments"),
    ({"action": "billing.x", "risk": "high", "context": {"a": ["\u0000"]}}, "context.a.0"),
    ({"action": "billing.x", "risk": "high", "prompt": {"name": "p\u0000", "version": 1}}, "prompt.name"),
])
def test_an_agent_request_with_a_nul_is_refused_naming_the_field(world, body, field):
    before = ApprovalRequest.objects.count()
    response = _post_json(world.client("agent_key"), "/api/v1/approvals", body)
    assert response.status_code == 400, response.content
    assert field in [e["field"] for e in response.json()["errors"]]
    assert ApprovalRequest.objects.count() == before


def test_a_decision_or_execution_report_with_a_nul_is_refused(world):
    response = _post_json(world.client("reviewer"), f"/api/v1/approvals/{world.request.pk}/decision",
                          {"decision": "reject", "reason": "no\u0000"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "reason"
    response = _post_json(world.client("reviewer"), f"/api/v1/approvals/{world.request.pk}/decision",
                          {"decision": "modify", "arguments": {"a": "\u0000"}})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "arguments.a"
    world.request.refresh_from_db()
    assert world.request.status == Status.PENDING
    response = _post_json(world.client("agent_key"), f"/api/v1/approvals/{world.request.pk}/execution",
                          {"result": "ok", "digest": "\u0000"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "digest"


@pytest.mark.parametrize("url, field", [
    ("/api/v1/runs?q=a%00b", "q"),
    ("/api/v1/runs?agent=a%00b", "agent"),
    ("/api/v1/runs?prompt_version=a%00b", "prompt_version"),
])
def test_a_filter_with_a_nul_is_refused_naming_it(world, url, field):
    response = world.client("agent_key").get(url)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("role, url", [
    ("agent_key", "/api/v1/runs/a%00b"),
    ("agent_key", "/api/v1/prompts/a%00b"),
    ("admin", "/runs/a%00b/"),
    ("admin", "/runs/{trace_id}/spans/a%00b/"),
])
def test_an_id_with_a_nul_in_the_path_is_bad_input(world, role, url):
    response = world.client(role).get(url.format(trace_id=world.run.trace_id))
    assert response.status_code in (400, 404)


def test_a_form_field_read_without_a_django_form_is_checked_too(world):
    from django.utils import timezone

    incident = Incident.objects.create(agent=world.agent, kind="loop", dedupe_key="k", title="Loop",
                                       opened_at=timezone.now())
    response = world.client("operator").post(f"/incidents/{incident.pk}/resolve/", {"note": "fixed\u0000"})
    assert response.status_code == 400
    incident.refresh_from_db()
    assert incident.status != "resolved"

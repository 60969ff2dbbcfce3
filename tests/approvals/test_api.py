"""The agent API contract: status codes, fields, idempotency, ownership, execution reports."""

import json

import pytest
from django.test import Client

from agents import services as agent_services
from approvals.models import ApprovalRequest, Status
from approvals.services import decide_request
from tests import factories
from tests.approvals.helpers import make_queue, make_reviewer, make_rule

pytestmark = pytest.mark.django_db

URL = "/api/v1/approvals"


def post(client, body, headers, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers, **extra)


BODY = {"action": "refunds.issue", "arguments": {"amount": 900, "order": "A-1"}, "summary": "Refund order A-1",
        "risk": "high", "resource": "crm:order:A-1", "trace_id": "ab" * 16, "span_id": "cd" * 8,
        "prompt": {"name": "support", "version": 3}, "context": {"ticket": 7}, "timeout_s": 600}


def test_create_answers_201_with_the_contract_fields(client, agent_headers, settings):
    response = post(client, BODY, agent_headers)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "pending"
    assert data["queue"] == "default"
    assert data["decided_by"] is None
    assert data["due_at"]
    assert data["url"] == f"{settings.CONSOLE_BASE_URL}/approvals/{data['id']}/"
    assert len(data["digest"]) == 64
    req = ApprovalRequest.objects.get(pk=data["id"])
    assert (req.prompt_name, req.prompt_version, req.resource, req.timeout_s) == ("support", "3", "crm:order:A-1", 600)


def test_without_a_key_it_is_401(client):
    assert post(client, BODY, {}).status_code == 401


def test_a_revoked_key_is_401(client, agent):
    key, plain = factories.make_key(agent)
    agent_services.revoke_key(key_id=key.pk, actor="system:test")
    assert post(client, BODY, {"HTTP_AUTHORIZATION": f"Bearer {plain}"}).status_code == 401


@pytest.mark.parametrize("change, field", [
    ({"risk": "urgent"}, "risk"),
    ({"risk": None}, "risk"),
    ({"action": ""}, "action"),
    ({"arguments": [1, 2]}, "arguments"),
    ({"arguments": {"blob": "x" * (65 * 1024)}}, "arguments"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"prompt": {"version": 1}}, "prompt.name"),
])
def test_field_errors_are_400_naming_the_field(client, agent_headers, change, field):
    body = {**BODY, **change}
    if change.get("risk", "") is None:
        del body["risk"]
    response = post(client, body, agent_headers)
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]


def test_a_too_long_idempotency_key_is_400_naming_it(client, agent_headers):
    response = post(client, BODY, agent_headers, HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


def test_a_retry_with_the_same_idempotency_key_gets_the_same_request(client, agent_headers):
    first = post(client, BODY, agent_headers, HTTP_IDEMPOTENCY_KEY="retry-1")
    second = post(client, BODY, agent_headers, HTTP_IDEMPOTENCY_KEY="retry-1")
    third = post(client, BODY, agent_headers, HTTP_IDEMPOTENCY_KEY="retry-2")
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert third.json()["id"] != first.json()["id"]
    assert ApprovalRequest.objects.count() == 2


def test_idempotency_keys_are_per_agent(client, agent_headers):
    _key, other_plain = factories.make_key(factories.make_agent("other-bot"))
    a = post(client, BODY, agent_headers, HTTP_IDEMPOTENCY_KEY="same")
    b = post(client, BODY, {"HTTP_AUTHORIZATION": f"Bearer {other_plain}"}, HTTP_IDEMPOTENCY_KEY="same")
    assert a.json()["id"] != b.json()["id"]


def test_a_paused_agent_is_answered_rejected_with_reason(client, agent, agent_headers):
    agent_services.pause_agent(agent_id=agent.pk, actor="system:test", reason="budget")
    data = post(client, BODY, agent_headers).json()
    assert (data["status"], data["reason"], data["decided_by"]) == ("rejected", "paused: budget", "system:paused")


def test_a_deny_rule_is_answered_at_once_with_the_rule(client, agent_headers):
    make_rule(name="no-refunds", action_pattern="refunds.*", outcome="deny")
    data = post(client, BODY, agent_headers).json()
    assert (data["status"], data["decided_by"], data["rule"]) == ("rejected", "rule:no-refunds", "no-refunds")
    assert "no-refunds" in data["reason"]


def test_get_reads_own_requests_and_404s_for_others(client, agent_headers):
    created = post(client, BODY, agent_headers).json()
    _key, other_plain = factories.make_key(factories.make_agent("other-bot"))
    mine = client.get(f"{URL}/{created['id']}", **agent_headers)
    theirs = client.get(f"{URL}/{created['id']}", HTTP_AUTHORIZATION=f"Bearer {other_plain}")
    missing = client.get(f"{URL}/999999", **agent_headers)
    assert mine.status_code == 200 and mine.json()["status"] == "pending"
    assert theirs.status_code == 404
    assert missing.status_code == 404


def test_get_without_a_key_is_401(client):
    assert client.get(f"{URL}/1").status_code == 401


def test_a_negative_wait_is_400(client, agent_headers):
    created = post(client, BODY, agent_headers).json()
    assert client.get(f"{URL}/{created['id']}?wait=-1", **agent_headers).status_code == 400


def test_get_returns_the_edited_arguments_and_their_digest(client, agent_headers, admin_user):
    created = post(client, BODY, agent_headers).json()
    decide_request(request_id=created["id"], reviewer=admin_user, verdict="modify", reason="cap it",
                   arguments={"amount": 500, "order": "A-1"})
    data = client.get(f"{URL}/{created['id']}", **agent_headers).json()
    assert data["status"] == "approved"
    assert data["arguments"] == {"amount": 500, "order": "A-1"}
    assert data["edited"] is True
    assert data["digest"] != created["digest"]
    assert data["decided_by"] == admin_user.username


# --- execution reports ------------------------------------------------------------------------------


def _approved(client, agent_headers, admin_user):
    created = post(client, BODY, agent_headers).json()
    decide_request(request_id=created["id"], reviewer=admin_user, verdict="approve", reason="fine")
    return created["id"]


def test_execution_is_reported_once(client, agent_headers, admin_user):
    pk = _approved(client, agent_headers, admin_user)
    url = f"{URL}/{pk}/execution"
    first = client.post(url, data={"result": {"refund_id": "r-1"}}, content_type="application/json", **agent_headers)
    second = client.post(url, data={"result": {"refund_id": "r-2"}}, content_type="application/json",
                         **agent_headers)
    assert first.status_code == 200 and first.json()["executed_at"]
    assert second.status_code == 409
    assert ApprovalRequest.objects.get(pk=pk).execution_result == {"refund_id": "r-1"}


def test_execution_of_a_pending_or_rejected_request_is_refused(client, agent_headers, admin_user):
    created = post(client, BODY, agent_headers).json()
    url = f"{URL}/{created['id']}/execution"
    assert client.post(url, data={}, content_type="application/json", **agent_headers).status_code == 409
    decide_request(request_id=created["id"], reviewer=admin_user, verdict="reject", reason="no")
    response = client.post(url, data={}, content_type="application/json", **agent_headers)
    assert response.status_code == 409
    assert ApprovalRequest.objects.get(pk=created["id"]).executed_at is None


def test_execution_with_another_digest_is_refused(client, agent_headers, admin_user):
    pk = _approved(client, agent_headers, admin_user)
    response = client.post(f"{URL}/{pk}/execution", data={"digest": "0" * 64}, content_type="application/json",
                           **agent_headers)
    assert response.status_code == 409
    assert ApprovalRequest.objects.get(pk=pk).executed_at is None


def test_another_agent_cannot_report_execution(client, agent_headers, admin_user):
    pk = _approved(client, agent_headers, admin_user)
    _key, other_plain = factories.make_key(factories.make_agent("other-bot"))
    response = client.post(f"{URL}/{pk}/execution", data={}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {other_plain}")
    assert response.status_code == 404


# --- the decision endpoint -------------------------------------------------------------------------


def _decide(client, pk, body, **extra):
    return client.post(f"{URL}/{pk}/decision", data=json.dumps(body), content_type="application/json", **extra)


def test_a_queue_reviewer_decides_and_the_second_gets_409_naming_the_first(agent):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    req = __import__("tests.approvals.helpers", fromlist=["x"]).make_request(agent=agent)
    c1, c2 = Client(), Client()
    c1.force_login(rita)
    c2.force_login(rob)
    first = _decide(c1, req.pk, {"decision": "approve", "reason": "ok", "reason_category": "ok"})
    second = _decide(c2, req.pk, {"decision": "reject", "reason": "no"})
    assert first.status_code == 200 and first.json()["decided_by"] == "rita"
    assert second.status_code == 409
    assert second.json()["decided_by"] == "rita"
    assert "rita" in second.json()["detail"]


def test_modify_without_arguments_is_400_naming_arguments(admin_client_, agent):
    from tests.approvals.helpers import make_request

    req = make_request(agent=agent)
    response = _decide(admin_client_, req.pk, {"decision": "modify", "reason": "x"})
    assert response.status_code == 400
    assert "arguments" in response.json()["detail"]
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


def test_an_agent_key_can_never_decide(client, agent, agent_headers):
    from tests.approvals.helpers import make_request

    req = make_request(agent=agent)
    response = _decide(client, req.pk, {"decision": "approve", "reason": "self-approval"}, **agent_headers)
    assert response.status_code in (401, 403)
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


def test_the_decision_endpoint_checks_csrf(admin_user, agent):
    from tests.approvals.helpers import make_request

    req = make_request(agent=agent)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = _decide(client, req.pk, {"decision": "approve", "reason": "ok"})
    assert response.status_code == 403
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


def test_openapi_lists_the_approval_endpoints(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/approvals", "/api/v1/approvals/{approval_id}", "/api/v1/approvals/{approval_id}/execution",
            "/api/v1/approvals/{approval_id}/decision"} <= set(paths)

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command

from agents import services
from agents.models import AgentKey
from tests import factories

pytestmark = pytest.mark.django_db


def test_key_is_stored_only_as_its_hash_with_a_visible_prefix(agent):
    key, plain = services.issue_key(agent=agent, actor="system:test", name="worker")
    row = AgentKey.objects.get(pk=key.pk)
    assert plain.startswith("aoc_") and len(plain) > 40
    assert row.hashed == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in {row.hashed, row.prefix, row.name}
    assert row.prefix == plain[:12]


def test_whoami_answers_for_the_keys_own_agent(client, agent, agent_headers):
    response = client.get("/api/v1/whoami", **agent_headers)
    assert response.status_code == 200
    assert response.json()["agent"] == "billing-bot"


def test_two_agents_keys_each_act_for_their_own_agent(client):
    _k1, plain1 = factories.make_key(factories.make_agent("alpha"))
    _k2, plain2 = factories.make_key(factories.make_agent("beta"))
    assert client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain1}").json()["agent"] == "alpha"
    assert client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain2}").json()["agent"] == "beta"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer aoc_guessed-key"])
def test_missing_or_wrong_keys_get_401(client, agent_key, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/v1/whoami", **extra)
    assert response.status_code == 401
    assert "credentials" in response.json()["detail"]


def test_revoked_key_fails_at_once(client, agent, admin_user):
    key, plain = services.issue_key(agent=agent, actor=admin_user)
    assert client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 200
    services.revoke_key(key_id=key.pk, actor=admin_user)
    assert client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 401


def test_last_used_is_recorded(client, agent):
    key, plain = services.issue_key(agent=agent, actor="system:test")
    assert key.last_used_at is None
    client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain}")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_issue_and_revoke_are_audited(agent, admin_user):
    from console.models import AuditEntry

    key, _plain = services.issue_key(agent=agent, actor=admin_user)
    services.revoke_key(key_id=key.pk, actor=admin_user)
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions[-2:] == ["agent_key.issued", "agent_key.revoked"]


def test_agent_key_cannot_open_browser_pages(client, agent_headers):
    response = client.get("/agents/", **agent_headers)
    assert response.status_code == 302  # to the login page: a key is no session
    assert "/login/" in response["Location"]


def test_create_agent_key_command_prints_a_working_key(client):
    out, err = StringIO(), StringIO()
    call_command("create_agent_key", "script-bot", stdout=out, stderr=err)
    plain = out.getvalue().strip()
    assert "shown only now" in err.getvalue()
    assert client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {plain}").json()["agent"] == "script-bot"


def test_admin_issues_a_key_in_the_browser_and_sees_it_once(admin_client_, agent):
    response = admin_client_.post(f"/agents/{agent.pk}/keys/", {"name": "ci"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plain = response.context["new_key"]["plain"]
    assert plain.encode() in response.content
    again = admin_client_.get(f"/agents/{agent.pk}/")
    assert plain.encode() not in again.content


def test_agent_names_are_unique_regardless_of_case(admin_client_):
    factories.make_agent("Support")
    response = admin_client_.post("/agents/new/", {"name": "support", "description": ""})
    assert response.status_code == 400
    assert b"already exists" in response.content

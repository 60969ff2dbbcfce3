"""Role x page: who may see and do what. Extend ROUTES when a page is added."""

import pytest

from tests import factories

pytestmark = pytest.mark.django_db

ALLOWED = 200
DENIED = 403
LOGIN = 302

# (method, path template, {role: expected status})
ROUTES = [
    ("get", "/", {"anonymous": LOGIN, "none": DENIED, "reviewer": ALLOWED, "operator": ALLOWED, "admin": ALLOWED}),
    ("get", "/agents/", {"anonymous": LOGIN, "none": DENIED, "reviewer": ALLOWED, "operator": ALLOWED,
                         "admin": ALLOWED}),
    ("get", "/agents/{agent}/", {"anonymous": LOGIN, "none": DENIED, "reviewer": ALLOWED, "operator": ALLOWED,
                                 "admin": ALLOWED}),
    ("get", "/agents/new/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED, "operator": DENIED,
                             "admin": ALLOWED}),
    ("post", "/agents/{agent}/pause/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED,
                                        "operator": LOGIN, "admin": LOGIN}),
    ("post", "/agents/{agent}/resume/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED,
                                         "operator": LOGIN, "admin": LOGIN}),
    ("post", "/agents/{agent}/keys/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED,
                                       "operator": DENIED, "admin": ALLOWED}),
    ("post", "/agents/keys/{key}/revoke/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED,
                                            "operator": DENIED, "admin": LOGIN}),
    ("get", "/audit/", {"anonymous": LOGIN, "none": DENIED, "reviewer": DENIED, "operator": DENIED,
                        "admin": ALLOWED}),
]

CASES = [(method, path, role, expected) for method, path, by_role in ROUTES for role, expected in by_role.items()]


@pytest.mark.parametrize(("method", "path", "role", "expected"), CASES,
                         ids=[f"{m}-{p}-{r}" for m, p, r, _ in CASES])
def test_role_matrix(clients_by_role, method, path, role, expected):
    agent = factories.make_agent("matrix-bot")
    key, _plain = factories.make_key(agent)
    url = path.format(agent=agent.pk, key=key.pk)
    response = getattr(clients_by_role[role], method)(url)
    assert response.status_code == expected, f"{role} {method.upper()} {url}"
    if expected == LOGIN and role == "anonymous":
        assert response["Location"].startswith("/login/")


def test_reviewer_cannot_pause_and_nothing_changes(reviewer_client):
    agent = factories.make_agent("steady")
    reviewer_client.post(f"/agents/{agent.pk}/pause/")
    agent.refresh_from_db()
    assert agent.is_paused is False


def test_operator_pauses_and_resumes_with_htmx(operator_client):
    agent = factories.make_agent("wobbly")
    response = operator_client.post(f"/agents/{agent.pk}/pause/", {"reason": "loop"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"paused" in response.content
    agent.refresh_from_db()
    assert agent.is_paused and agent.paused_reason == "loop"
    operator_client.post(f"/agents/{agent.pk}/resume/", HTTP_HX_REQUEST="true")
    agent.refresh_from_db()
    assert not agent.is_paused


def test_nav_shows_audit_log_only_to_admins(clients_by_role):
    assert b"Audit log" in clients_by_role["admin"].get("/").content
    assert b"Audit log" not in clients_by_role["operator"].get("/").content
    assert b"Audit log" not in clients_by_role["reviewer"].get("/").content

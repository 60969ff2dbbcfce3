"""Role x every URL pattern of the project, found by walking the URL resolver.

A route added later is covered without editing this file: it is filled in from
its parameter names and held to the same invariants. Each role's sweep runs
every request in a savepoint that is rolled back, so one POST cannot change
what the next request sees.

Invariants:
- nothing but PUBLIC answers 2xx without login; HTML pages send the anonymous
  (and a bare agent key) to /login/, the API answers 401;
- a logged-in user without a role gets no 2xx from any page or API;
- every HTML view names its roles (``role_required``) or is listed in
  LOGIN_ONLY_VIEWS with the check it does itself; a user lacking the named role
  gets 403 (or 405 for the wrong method), a user holding it can GET the page;
- no role and no route answers 5xx.
"""

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern

from console.roles import has_role
from tests.hardening.routes import ADMIN_SITE_ROUTES, ROUTES, fill

pytestmark = pytest.mark.django_db

PUBLIC = {"login/", "healthz", "metrics", "v1/traces", "api/v1/openapi.json", "api/v1/docs", "api/v1/"}
# HTML views without role_required and the check they do themselves.
LOGIN_ONLY_VIEWS = {
    "": "staff roles, else the no-role page (403)",
    "audit/": "Admins only (PermissionDenied)",
    "logout/": "POST only; logs out whoever asks",
}
ROLES = ["anonymous", "none", "reviewer", "stranger", "operator", "admin", "agent_key"]


def required_roles(pattern: URLPattern):
    return getattr(pattern.callback, "required_roles", None)


def _is_api(route: str) -> bool:
    return route.startswith(("api/", "v1/"))


def sweep(world, role: str, routes=ROUTES, methods=("get", "post")):
    """(route, method, url, status, location) for every route, each in a rolled-back savepoint."""
    client = world.client(role)
    results = []
    for route, pattern in routes:
        if route.endswith("logout/"):
            continue  # would end the session the sweep goes on with; see test_logout_needs_post
        url = fill(route, world)
        for method in methods:
            with transaction.atomic():
                response = getattr(client, method)(url)
                transaction.set_rollback(True)
            results.append((route, pattern, method, url, response.status_code, response.get("Location", "")))
    return results


def _report(problems):
    return "\n".join(problems[:60]) + (f"\n... {len(problems) - 60} more" if len(problems) > 60 else "")


def test_every_route_is_covered_by_the_walk():
    routes = {route for route, _ in ROUTES}
    assert {"approvals/<int:pk>/decide/", "api/v1/approvals/<approval_id>/decision", "v1/traces"} <= routes
    assert len(ADMIN_SITE_ROUTES) > 10


def test_every_html_view_names_its_roles_or_is_listed():
    problems = []
    for route, pattern in ROUTES:
        if _is_api(route) or route in PUBLIC or route in LOGIN_ONLY_VIEWS:
            continue
        if not required_roles(pattern):
            problems.append(f"{route} ({pattern.lookup_str}) has no role_required and is not in LOGIN_ONLY_VIEWS")
    assert not problems, _report(problems)


@pytest.mark.parametrize("role", ["anonymous", "agent_key"])
def test_nothing_but_public_routes_answer_without_a_login(world, role):
    problems = []
    for route, _p, method, url, status, location in sweep(world, role):
        if status >= 500:
            problems.append(f"{method.upper()} {url}: {status}")
        elif route in PUBLIC:
            continue
        elif _is_api(route):
            if role == "agent_key":
                continue  # the agent API is checked by the tests below
            if status not in (401, 405):
                problems.append(f"{method.upper()} {url}: {status}, expected 401 (or 405)")
        elif status == 302:
            if not location.startswith("/login/"):
                problems.append(f"{method.upper()} {url}: redirects to {location}, not /login/")
        elif status not in (405,):
            problems.append(f"{method.upper()} {url}: {status}, expected a redirect to /login/ (or 405)")
    assert not problems, _report(problems)


@pytest.mark.parametrize("role", ["anonymous", "agent_key", "none"])
def test_the_django_admin_site_is_closed_to_non_staff(world, role):
    problems = []
    for _route, _p, method, url, status, location in sweep(world, role, ADMIN_SITE_ROUTES, methods=("get",)):
        if 200 <= status < 300 or status >= 500:
            problems.append(f"{method.upper()} {url}: {status}")
        if status == 302 and "login" not in location:
            problems.append(f"{method.upper()} {url}: redirects to {location}")
    assert not problems, _report(problems)


def test_the_django_admin_login_is_the_rate_limited_console_login(world):
    """Django's own admin login form has no rate limit: it must hand over to /login/."""
    response = Client().get("/django-admin/login/?next=/django-admin/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = Client().post("/django-admin/login/", {"username": "ada", "password": "guess"})
    assert response.status_code in (302, 403) and "_auth_user_id" not in Client().session


def test_a_user_without_a_role_gets_nothing(world):
    problems = []
    for route, _p, method, url, status, _location in sweep(world, "none"):
        if status >= 500:
            problems.append(f"{method.upper()} {url}: {status}")
        elif route in PUBLIC or route in ("login/", "logout/"):
            continue
        elif 200 <= status < 300:
            problems.append(f"{method.upper()} {url}: {status}")
    assert not problems, _report(problems)


@pytest.mark.parametrize("role", ["reviewer", "stranger", "operator", "admin"])
def test_each_role_gets_exactly_what_its_views_name(world, role):
    user = {"reviewer": world.reviewer, "stranger": world.stranger, "operator": world.operator,
            "admin": world.admin}[role]
    problems = []
    for route, pattern, method, url, status, location in sweep(world, role):
        where = f"{role} {method.upper()} {url}"
        if status >= 500:
            problems.append(f"{where}: {status}")
            continue
        if status == 302 and location.startswith("/login/") and route not in ("logout/",):
            problems.append(f"{where}: sent to the login page although logged in")
        roles = required_roles(pattern)
        if not roles or _is_api(route):
            continue
        if not has_role(user, *roles):
            if status not in (403, 405):
                problems.append(f"{where}: {status}, but the view needs {list(roles)}")
        elif status == 403 and method == "get" and not (role == "stranger" and route.startswith("approvals/<int:pk>")):
            # (a POST may need more than the page: e.g. only Admins change detector settings)
            problems.append(f"{where}: 403 although the role is admitted")
    assert not problems, _report(problems)


def test_logout_needs_post_and_ends_the_session(world):
    client = world.client("reviewer")
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_the_audit_log_is_for_admins_only(world):
    for role in ("none", "reviewer", "operator"):
        assert world.client(role).get("/audit/").status_code == 403, role
    assert world.client("admin").get("/audit/").status_code == 200


# --- the agent API ---------------------------------------------------------------------------------


def test_an_agent_key_reads_its_own_runs_and_requests_only(world):
    client = world.client("agent_key")
    runs = client.get("/api/v1/runs").json()["items"]
    assert [r["agent"] for r in runs] == ["billing-bot"]
    assert client.get(f"/api/v1/runs/{world.run.trace_id}").status_code == 200
    assert client.get(f"/api/v1/runs/{world.other_run.trace_id}").status_code == 404
    assert client.get("/api/v1/runs?agent=rival-bot").json()["items"] == []
    assert client.get("/api/v1/runs?q=Rival").json()["items"] == []
    assert client.get(f"/api/v1/approvals/{world.request.pk}").status_code == 200
    assert client.get(f"/api/v1/approvals/{world.other_request.pk}").status_code == 404
    response = client.post(f"/api/v1/approvals/{world.other_request.pk}/execution", {"result": "done"},
                           content_type="application/json")
    assert response.status_code == 404


def test_an_agent_key_can_never_decide(world):
    from approvals.models import Status

    client = world.client("agent_key")
    for req in (world.request, world.other_request):
        response = client.post(f"/api/v1/approvals/{req.pk}/decision", {"decision": "approve"},
                               content_type="application/json")
        assert response.status_code == 401
        req.refresh_from_db()
        assert req.status == Status.PENDING
        # nor through the reviewer's form
        response = client.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"})
        assert response.status_code == 302 and response["Location"].startswith("/login/")
        req.refresh_from_db()
        assert req.status == Status.PENDING


def test_a_reviewer_decides_only_in_their_queues(world):
    from approvals.models import Status

    stranger = world.client("stranger")
    response = stranger.post(f"/api/v1/approvals/{world.request.pk}/decision", {"decision": "approve"},
                             content_type="application/json")
    # the same answer as for a request that does not exist: a 403 would confirm that it exists
    assert response.status_code == 404
    missing = stranger.post("/api/v1/approvals/999999999/decision", {"decision": "approve"},
                            content_type="application/json")
    assert missing.status_code == 404 and missing.json() == response.json()
    response = stranger.post(f"/approvals/{world.request.pk}/decide/", {"verdict": "approve", "reason": "x"})
    assert response.status_code in (403, 404)
    world.request.refresh_from_db()
    assert world.request.status == Status.PENDING
    operator = world.client("operator")
    response = operator.post(f"/api/v1/approvals/{world.request.pk}/decision", {"decision": "approve"},
                             content_type="application/json")
    assert response.status_code == 403
    world.request.refresh_from_db()
    assert world.request.status == Status.PENDING
    response = world.client("reviewer").post(f"/api/v1/approvals/{world.request.pk}/decision",
                                             {"decision": "approve"}, content_type="application/json")
    assert response.status_code == 200
    world.request.refresh_from_db()
    assert world.request.status == Status.APPROVED


def test_a_revoked_key_fails_at_once_everywhere(world):
    from agents import services as agent_services
    from agents.models import AgentKey
    from tests.traces.helpers import PROTOBUF, protobuf_body, record_agent_run

    client = world.client("agent_key")
    assert client.get("/api/v1/whoami").status_code == 200
    key = AgentKey.objects.get(agent=world.agent, prefix=world.key[:12])
    agent_services.revoke_key(key_id=key.pk, actor=world.admin)
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/api/v1/runs").status_code == 401
    assert client.get(f"/api/v1/approvals/{world.request.pk}").status_code == 401
    assert client.post("/api/v1/approvals", {"action": "billing.x", "risk": "low"},
                       content_type="application/json").status_code == 401
    assert client.get(f"/api/v1/prompts/{world.prompt_name}").status_code == 401
    response = client.post("/v1/traces", protobuf_body(record_agent_run()), content_type=PROTOBUF)
    assert response.status_code == 401


def test_staff_sessions_read_the_api_but_no_role_does_not(world):
    for role in ("reviewer", "operator", "admin"):
        assert world.client(role).get("/api/v1/runs").status_code == 200, role
    for url in ("/api/v1/runs", f"/api/v1/runs/{world.run.trace_id}", f"/api/v1/prompts/{world.prompt_name}"):
        assert world.client("none").get(url).status_code == 403, url
    assert world.client("reviewer").get("/api/v1/whoami").status_code == 401


def test_the_span_panel_shows_only_approval_requests_the_viewer_may_see(world):
    """A run page is for every staff role, but the approval requests asked from its spans are not: a reviewer
    sees only their queues' (as on /approvals/<id>/)."""
    from tests.hardening.conftest import pending_request

    pending_request(world.agent, world.queue, summary="Refund secret 77", trace_id=world.run.trace_id,
                    span_id=world.span_id, action="refund_from_span")
    url = f"/runs/{world.run.trace_id}/spans/{world.span_id}/"
    for role, sees in (("reviewer", True), ("operator", True), ("admin", True), ("stranger", False)):
        for htmx in (False, True):
            response = world.client(role).get(url, **({"HTTP_HX_REQUEST": "true"} if htmx else {}))
            assert response.status_code == 200, role
            assert ("billing.refund_from_span" in response.content.decode()) is sees, (role, htmx)

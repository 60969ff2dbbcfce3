"""Role x page for every approvals page and action: who may see and do what.

Roles: anonymous, a user with no role, the queue's reviewer, an operator, an
admin, and ``stranger``, a reviewer of another queue.
"""

import pytest
from django.test import Client

from approvals.models import GuardianRule, Status
from console.roles import Role
from tests import factories
from tests.approvals.test_views import make_pending, make_queue

pytestmark = pytest.mark.django_db

OK, DENIED, MISSING, REDIRECT = 200, 403, 404, 302
LOGIN = "login"  # 302 to /login/

STAFF_ONLY = {"anonymous": LOGIN, "none": DENIED}
ADMIN_ONLY = {**STAFF_ONLY, "reviewer": DENIED, "operator": DENIED, "stranger": DENIED}

# (method, path, data, {role: expected})
ROUTES = [
    ("get", "/approvals/", None, {**STAFF_ONLY, "reviewer": OK, "operator": DENIED, "admin": OK, "stranger": OK}),
    ("get", "/approvals/overview/", None, {**STAFF_ONLY, "reviewer": DENIED, "operator": OK, "admin": OK,
                                           "stranger": DENIED}),
    ("get", "/approvals/{req}/", None, {**STAFF_ONLY, "reviewer": OK, "operator": OK, "admin": OK,
                                        "stranger": MISSING}),
    ("get", "/approvals/{req}/card/", None, {**STAFF_ONLY, "reviewer": OK, "operator": OK, "admin": OK,
                                             "stranger": OK}),
    ("post", "/approvals/{req}/claim/", {}, {**STAFF_ONLY, "reviewer": REDIRECT, "operator": DENIED,
                                             "admin": REDIRECT, "stranger": MISSING}),
    ("post", "/approvals/{req}/release/", {}, {**STAFF_ONLY, "reviewer": REDIRECT, "operator": DENIED,
                                               "admin": REDIRECT, "stranger": MISSING}),
    ("post", "/approvals/{req}/decide/", {"verdict": "approve"},
     {**STAFF_ONLY, "reviewer": REDIRECT, "operator": DENIED, "admin": REDIRECT, "stranger": MISSING}),
    ("get", "/policies/", None, {**ADMIN_ONLY, "admin": OK}),
    ("get", "/policies/rules/", None, {**ADMIN_ONLY, "admin": OK}),
    ("get", "/policies/rules/new/", None, {**ADMIN_ONLY, "admin": OK}),
    ("get", "/policies/rules/{rule}/", None, {**ADMIN_ONLY, "admin": OK}),
    ("post", "/policies/rules/{rule}/toggle/", {}, {**ADMIN_ONLY, "admin": REDIRECT}),
    ("post", "/policies/rules/{rule}/delete/", {}, {**ADMIN_ONLY, "admin": REDIRECT}),
    ("get", "/policies/rules/dry-run/", None, {**ADMIN_ONLY, "admin": OK}),
    ("get", "/queues/", None, {**ADMIN_ONLY, "admin": OK}),
    ("post", "/queues/", {"name": "new-queue"}, {**ADMIN_ONLY, "admin": REDIRECT}),
    ("get", "/queues/{queue}/", None, {**ADMIN_ONLY, "admin": OK}),
    ("get", "/queues/{queue}/matrix/", None, {**ADMIN_ONLY, "admin": OK}),
    ("post", "/queues/{queue}/matrix/", {"op": "add", "breach_action": "keep_pending_and_page"},
     {**ADMIN_ONLY, "admin": OK}),
    ("post", "/queues/{queue}/matrix/reapply/", {}, {**ADMIN_ONLY, "admin": REDIRECT}),
]

CASES = [(m, p, d, role, want) for m, p, d, by_role in ROUTES for role, want in by_role.items()]


@pytest.fixture
def world():
    reviewer = factories.make_user(Role.REVIEWER, username="rita")
    stranger = factories.make_user(Role.REVIEWER, username="sam")
    queue = make_queue("billing", reviewer)
    make_queue("ops", stranger)
    req = make_pending(factories.make_agent("bot"), queue)
    users = {"none": factories.make_user(None, username="nora"), "reviewer": reviewer, "stranger": stranger,
             "operator": factories.make_user(Role.OPERATOR, username="otto"),
             "admin": factories.make_user(Role.ADMIN, username="ada")}
    clients = {"anonymous": Client()}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    return {"clients": clients, "req": req, "queue": queue, "rule": GuardianRule.objects.get(name="to-billing")}


@pytest.mark.parametrize(("method", "path", "data", "role", "expected"), CASES,
                         ids=[f"{m}-{p}-{r}" for m, p, _d, r, _w in CASES])
def test_role_matrix(world, method, path, data, role, expected):
    url = path.format(req=world["req"].pk, queue=world["queue"].pk, rule=world["rule"].pk)
    client = world["clients"][role]
    response = client.get(url) if method == "get" else client.post(url, data or {})
    if expected == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    else:
        assert response.status_code == expected, f"{role} {method.upper()} {url}"
        if expected == REDIRECT:
            assert not response["Location"].startswith("/login/")


def test_stranger_cannot_decide_and_nothing_changes(world):
    req = world["req"]
    response = world["clients"]["stranger"].post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"},
                                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    req.refresh_from_db()
    assert req.status == Status.PENDING and req.decisions.count() == 0


def test_stranger_gets_an_empty_card_and_does_not_see_it_listed(world):
    req = world["req"]
    client = world["clients"]["stranger"]
    assert client.get(f"/approvals/{req.pk}/card/?ctx=queue").content.strip() == b""
    assert f'id="request-{req.pk}"' not in client.get("/approvals/").content.decode()


def test_operator_cannot_decide_even_by_post(world):
    req = world["req"]
    world["clients"]["operator"].post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"})
    req.refresh_from_db()
    assert req.status == Status.PENDING

"""The queue's members list offers only users who can review (may_decide), not Operators."""

import re

import pytest

from approvals.models import Queue
from console.roles import Role, grant_role
from tests import factories
from tests.approvals.helpers import make_queue

pytestmark = pytest.mark.django_db


def _member_options(html: str) -> list[str]:
    select = html[html.index('name="members"'):]
    select = select[:select.index("</select>")]
    return re.findall(r"<option [^>]*>([^<]+)</option>", select)


def test_operators_and_users_without_a_role_are_not_offered_as_members(clients_by_role, reviewer, operator,
                                                                        admin_user, nobody):
    queue = make_queue("payments")
    offered = _member_options(clients_by_role["admin"].get(f"/queues/{queue.pk}/").content.decode())
    assert reviewer.username in offered and admin_user.username in offered
    assert operator.username not in offered and nobody.username not in offered


def test_an_operator_posted_as_member_is_refused_naming_the_field(clients_by_role, reviewer, operator):
    queue = make_queue("payments")
    data = {"description": "", "members": [reviewer.pk, operator.pk], "conflict_rule": "ask_human",
            **{f"sla_{r}": 30 for r in ("critical", "high", "medium", "low")}}
    response = clients_by_role["admin"].post(f"/queues/{queue.pk}/", data)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Queue.objects.get(pk=queue.pk).members.exists()


def test_a_user_with_both_roles_is_offered_once(clients_by_role):
    both = factories.make_user(Role.REVIEWER, username="bea")
    factories.make_user(Role.OPERATOR, username="bea2")
    grant_role(both, Role.ADMIN)
    queue = make_queue("payments")
    offered = _member_options(clients_by_role["admin"].get(f"/queues/{queue.pk}/").content.decode())
    assert offered.count("bea") == 1 and "bea2" not in offered

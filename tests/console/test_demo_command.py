"""``manage.py demo --no-serve``: the newcomer's first command sets everything up, twice without harm."""

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from approvals.models import GuardianRule, Queue
from console.roles import Role, has_role

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_setup_creates_the_logins_it_prints_and_is_idempotent():
    out = io.StringIO()
    call_command("demo", no_serve=True, stdout=out)
    call_command("demo", no_serve=True, stdout=io.StringIO())
    printed = out.getvalue()
    for username, password, role in [("reviewer", "reviewer-demo-pass", Role.REVIEWER),
                                     ("reviewer2", "reviewer2-demo-pass", Role.REVIEWER),
                                     ("operator", "operator-demo-pass", Role.OPERATOR),
                                     ("admin", "admin-demo-pass", Role.ADMIN)]:
        assert username in printed and password in printed
        user = authenticate(username=username, password=password)
        assert user is not None and has_role(user, role)
    # Two different reviewers can give the two approvals the prod-migrations rule asks for.
    rule = GuardianRule.objects.get(name="prod-migrations")
    assert rule.required_approvals == 2
    reviewers = set(rule.queue.members.values_list("username", flat=True))
    assert {"reviewer", "reviewer2"} <= reviewers
    assert Queue.objects.filter(name="data").count() == 1

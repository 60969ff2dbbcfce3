import io

import pytest

from approvals.models import GuardianRule, Queue, Status
from approvals.services import NewRequest, create_request
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def test_demo_seed_is_idempotent_and_routes_the_fleets_actions():
    from agents import demo as agents_demo
    from agents.models import Agent
    from approvals import demo

    factories.make_user(Role.REVIEWER, username="reviewer")
    factories.make_user(Role.ADMIN, username="admin")
    agents_demo.seed(io.StringIO())
    demo.seed(io.StringIO())
    demo.seed(io.StringIO())
    assert set(Queue.objects.values_list("name", flat=True)) >= {"payments", "deployments", "data"}
    assert Queue.objects.get(name="payments").members.filter(username="reviewer").exists()
    assert GuardianRule.objects.count() == len(demo.RULES)

    def ask(agent, action, risk, arguments):
        req, _ = create_request(agent=Agent.objects.get(name=agent),
                                new=NewRequest(action=action, risk=risk, arguments=arguments))
        return req.status, req.queue.name if req.queue_id else None

    assert ask("support-bot", "refund", "high", {"amount": 900}) == (Status.PENDING, "payments")
    assert ask("data-ops", "run_migration", "critical", {"environment": "prod", "sql": "ALTER TABLE t ADD c int"}) \
        == (Status.PENDING, "data")
    assert ask("data-ops", "run_migration", "critical", {"environment": "prod", "sql": "DROP TABLE users"}) \
        == (Status.REJECTED, None)
    assert ask("deploy-bot", "deploy", "high", {"environment": "prod"}) == (Status.PENDING, "deployments")
    assert ask("deploy-bot", "deploy", "high", {"environment": "staging"}) == (Status.APPROVED, None)

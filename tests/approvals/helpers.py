"""Factories for approvals tests: plain functions returning saved rows."""

import itertools
from datetime import datetime

from approvals import services
from approvals.models import GuardianRule, Queue
from tests import factories

_seq = itertools.count(1)


def make_queue(name: str | None = None, *, members=()) -> Queue:
    queue = Queue.objects.create(name=name or f"queue-{next(_seq)}")
    if members:
        queue.members.add(*members)
    return queue


def make_rule(**fields) -> GuardianRule:
    defaults = {"name": f"rule-{next(_seq)}", "action_pattern": "*", "outcome": "ask", "order": 10}
    defaults.update(fields)
    rule = GuardianRule(**defaults)
    rule.save()
    return rule


def make_request(*, agent=None, action: str = "refunds.issue", risk: str = "high", arguments: dict | None = None,
                 now: datetime | None = None, idempotency_key: str | None = None, **fields):
    """A request created through the service (so rules, SLA and escalation apply)."""
    agent = agent or factories.make_agent()
    new = services.NewRequest(action=action, risk=risk, arguments=arguments if arguments is not None else
                              {"amount": 100}, **fields)
    req, _created = services.create_request(agent=agent, new=new, idempotency_key=idempotency_key, now=now)
    return req


def make_reviewer(queue: Queue, username: str | None = None):
    from console.roles import Role

    user = factories.make_user(Role.REVIEWER, username=username)
    queue.members.add(user)
    return user

"""Demo data for ``manage.py demo``: how the demo queues arbitrate conflicts. Idempotent.

The fleet's support-bot (refunds, high risk, queue payments) and data-ops
(prod migrations, critical, queue data) now and then both act on
``crm:customer:42``. Whichever asks second is held: a migration waits for the
refund (data: higher risk waits), a refund is held for a reviewer to arbitrate
on its decision page (payments: ask a human, the default).
"""

from approvals.models import ConflictRule, Queue
from approvals.services import conflicts

ACTOR = "system:demo"

CONFLICT_RULES = {
    "data": ConflictRule.HIGHER_RISK_WAITS,
    "payments": ConflictRule.ASK_HUMAN,
    "deployments": ConflictRule.FIRST_WINS,
}


def seed(stdout) -> None:
    for name, rule in CONFLICT_RULES.items():
        queue = Queue.objects.filter(name=name).first()
        if queue is not None:
            conflicts.set_conflict_rule(queue_id=queue.pk, rule=rule, actor=ACTOR)
    stdout.write("Conflicts: " + ", ".join(f"{q} {r.label}" for q, r in CONFLICT_RULES.items()))

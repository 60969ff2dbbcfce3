"""An Admin changing a queue (conflict rule, members, description, matrix) while a request into it commits.

Both finish.

The request's foreign key to its queue is checked at commit (FOR KEY SHARE on the queue row), after the
request took the audit log's lock; a FOR UPDATE on the queue taken before the audit lock deadlocked them.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from approvals.models import ApprovalRequest, Queue
from approvals import services
from approvals.services.conflicts import set_conflict_rule
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_rule


def _waiting_for_advisory_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")
        return cursor.fetchone()[0]


QUEUE_CHANGES = {
    "conflict_rule": lambda q: set_conflict_rule(queue_id=q.pk, rule="first_wins", actor="admin"),
    "members": lambda q: services.set_queue_members(queue_id=q.pk, user_ids=[], actor="admin"),
    "description": lambda q: services.update_queue(queue_id=q.pk, description="changed", actor="admin"),
    "matrix": lambda q: services.update_matrix(queue_id=q.pk, levels=[{"after_minutes": 7, "queue_reviewers": True}],
                                               breach_action="keep_pending_and_page",
                                               actor="admin"),
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", sorted(QUEUE_CHANGES))
def test_changing_a_queue_while_an_agent_asks_into_it_never_deadlocks(change):
    queue = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=queue)
    agent = factories.make_agent("support-bot")
    asked, commit, errors = threading.Event(), threading.Event(), []

    def agent_asks():
        try:
            with transaction.atomic():
                make_request(agent=agent, action="crm.update", resource="crm:customer:42")  # audited: audit lock held
                asked.set()
                commit.wait(timeout=30)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)
        finally:
            asked.set()
            connection.close()

    def admin_changes_rule():
        try:
            QUEUE_CHANGES[change](queue)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)
        finally:
            connection.close()

    agent_thread = threading.Thread(target=agent_asks)
    agent_thread.start()
    assert asked.wait(timeout=30)
    admin_thread = threading.Thread(target=admin_changes_rule)
    admin_thread.start()
    for _ in range(300):  # until the Admin's change waits for the audit lock the request holds
        if _waiting_for_advisory_lock():
            break
        time.sleep(0.1)
    commit.set()
    agent_thread.join(timeout=60)
    admin_thread.join(timeout=60)
    assert errors == []
    assert ApprovalRequest.objects.filter(action="crm.update").count() == 1
    if change == "conflict_rule":
        assert Queue.objects.get(pk=queue.pk).conflict_rule == "first_wins"

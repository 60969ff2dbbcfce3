"""The escalation engine with a fixed clock, and exactly-once firing under concurrency."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from approvals import jobs
from approvals.models import ApprovalRequest, BreachAction, Delivery, EscalationFiring, Status
from approvals.services import (
    claim_request,
    decide_request,
    expire_claims,
    expire_overdue,
    handle_breaches,
    reapply_matrix,
    update_matrix,
)
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

M = timedelta(minutes=1)


@pytest.fixture
def setup(db, admin_user):
    """A queue with two reviewers and a matrix: reviewers at once; the boss after 5 min, twice more every 3 min."""
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    reviewers = [make_reviewer(queue, "rita"), make_reviewer(queue, "rob")]
    boss = factories.make_user(None, username="boss")
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.KEEP_PENDING_AND_PAGE, actor=admin_user, levels=[
        {"after_minutes": 0, "queue_reviewers": True, "email": False},
        {"after_minutes": 5, "user_ids": [boss.pk], "repeat_count": 2, "repeat_interval_minutes": 3},
    ])
    return queue, reviewers, boss


def fired(req):
    return list(EscalationFiring.objects.filter(request=req).order_by("id")
                .values_list("epoch", "level", "repeat"))


def test_levels_fire_on_time_and_once(setup, agent, fixed_now):
    req = make_request(agent=agent, risk="high", now=fixed_now)
    t0 = fixed_now
    assert jobs.fire_due_escalations(now=t0) == 1
    assert jobs.fire_due_escalations(now=t0) == 0           # same moment again: nothing new
    assert jobs.fire_due_escalations(now=t0 + 4 * M) == 0
    assert jobs.fire_due_escalations(now=t0 + 5 * M) == 1
    assert jobs.fire_due_escalations(now=t0 + 7 * M) == 0
    assert jobs.fire_due_escalations(now=t0 + 8 * M) == 1
    assert jobs.fire_due_escalations(now=t0 + 11 * M) == 1
    assert jobs.fire_due_escalations(now=t0 + 25 * M) == 0  # past the last repeat
    assert fired(req) == [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 1, 2)]


def test_a_firing_writes_deliveries_for_the_levels_recipients(setup, agent, fixed_now):
    _queue, reviewers, boss = setup
    req = make_request(agent=agent, risk="high", now=fixed_now)
    jobs.fire_due_escalations(now=fixed_now)
    first = set(Delivery.objects.filter(request=req).values_list("channel", "recipient"))
    assert first == {("in_app", "rita"), ("in_app", "rob")}  # level 0 has e-mail off
    jobs.fire_due_escalations(now=fixed_now + 5 * M)
    boss_rows = set(Delivery.objects.filter(request=req, user=boss).values_list("channel", "recipient"))
    assert boss_rows == {("in_app", "boss"), ("email", "boss@example.test")}


def test_a_decided_request_does_not_escalate(setup, agent, fixed_now, admin_user):
    req = make_request(agent=agent, risk="high", now=fixed_now)
    decide_request(request_id=req.pk, reviewer=admin_user, verdict="approve", reason="ok", now=fixed_now)
    assert jobs.fire_due_escalations(now=fixed_now + 60 * M) == 0
    assert fired(req) == []


def test_a_claim_pauses_escalation_and_a_lapsed_claim_restarts_it(setup, agent, fixed_now):
    _queue, (rita, _rob), _boss = setup
    req = make_request(agent=agent, risk="high", now=fixed_now)
    jobs.fire_due_escalations(now=fixed_now)                       # level 0 at t0
    claim_request(request_id=req.pk, reviewer=rita, now=fixed_now + 1 * M)  # claim until t0+11
    assert jobs.fire_due_escalations(now=fixed_now + 6 * M) == 0   # level 1 was due at t0+5: paused
    assert expire_claims(now=fixed_now + 10 * M) == 0
    assert expire_claims(now=fixed_now + 11 * M) == 1
    assert expire_claims(now=fixed_now + 11 * M) == 0
    req.refresh_from_db()
    assert (req.claimed_by, req.escalation_epoch) == (None, 1)
    assert req.next_escalation_at == fixed_now + 11 * M           # restarted from when the claim lapsed
    assert jobs.fire_due_escalations(now=fixed_now + 11 * M) == 1
    assert jobs.fire_due_escalations(now=fixed_now + 16 * M) == 1
    assert fired(req) == [(0, 0, 0), (1, 0, 0), (1, 1, 0)]


def test_breach_keep_pending_pages_once(setup, agent, fixed_now):
    req = make_request(agent=agent, risk="critical", now=fixed_now)   # default SLA: 10 min
    assert handle_breaches(now=fixed_now + 9 * M) == 0
    assert handle_breaches(now=fixed_now + 10 * M) == 1
    assert handle_breaches(now=fixed_now + 11 * M) == 0
    req.refresh_from_db()
    assert req.status == Status.PENDING and req.breached_at == fixed_now + 10 * M
    page = EscalationFiring.objects.get(request=req, level=EscalationFiring.BREACH_LEVEL)
    recipients = set(Delivery.objects.filter(firing=page, channel="in_app").values_list("recipient", flat=True))
    assert recipients == {"rita", "rob", "boss"}


def test_breach_expire_rejected_expires_the_request(setup, agent, fixed_now, admin_user):
    queue, _reviewers, _boss = setup
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.EXPIRE_REJECTED, actor=admin_user,
                  levels=[{"after_minutes": 0, "queue_reviewers": True}])
    req = make_request(agent=agent, risk="high", now=fixed_now)   # SLA 30 min
    assert handle_breaches(now=fixed_now + 30 * M) == 1
    req.refresh_from_db()
    assert (req.status, req.decider) == (Status.EXPIRED, "system:sla")
    assert "SLA breached" in req.reason
    assert jobs.fire_due_escalations(now=fixed_now + 31 * M) == 0


def test_the_agents_timeout_expires_the_request(setup, agent, fixed_now):
    req = make_request(agent=agent, risk="high", now=fixed_now, timeout_s=120)
    assert expire_overdue(now=fixed_now + timedelta(seconds=119)) == 0
    assert expire_overdue(now=fixed_now + timedelta(seconds=120)) == 1
    req.refresh_from_db()
    assert (req.status, req.decider) == (Status.EXPIRED, "system:timeout")


def test_reapplying_the_matrix_restarts_pending_requests_under_it(setup, agent, fixed_now, admin_user):
    queue, _reviewers, _boss = setup
    req = make_request(agent=agent, risk="high", now=fixed_now)
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.KEEP_PENDING_AND_PAGE, actor=admin_user,
                  levels=[{"after_minutes": 3, "queue_reviewers": True}])
    assert reapply_matrix(queue_id=queue.pk, actor=admin_user, now=fixed_now + 1 * M) == 1
    req.refresh_from_db()
    assert req.escalation_snapshot["levels"][0]["after_minutes"] == 3
    assert req.next_escalation_at == fixed_now + 4 * M


@pytest.mark.django_db
@pytest.mark.parametrize("levels, message", [
    ([], "at least one level"),
    ([{"after_minutes": 0}], "no recipients"),
    ([{"after_minutes": 5, "queue_reviewers": True}, {"after_minutes": 5, "queue_reviewers": True}],
     "delays must increase"),
    ([{"after_minutes": 0, "queue_reviewers": True, "repeat_count": 2, "repeat_interval_minutes": 0}],
     "repeat interval"),
])
def test_a_bad_matrix_is_refused_with_the_reason(admin_user, levels, message):
    from django.core.exceptions import ValidationError

    queue = make_queue()
    with pytest.raises(ValidationError, match=message):
        update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user, levels=levels)


def test_due_steps_lists_what_the_next_sweep_fires(setup, agent, fixed_now):
    from approvals.services import due_steps

    req = make_request(agent=agent, risk="high", now=fixed_now)
    assert due_steps(fixed_now) == [(req.pk, 0, 0)]
    jobs.fire_due_escalations(now=fixed_now)
    assert due_steps(fixed_now) == []
    assert due_steps(fixed_now + 5 * M) == [(req.pk, 1, 0)]


def test_the_sweep_job_runs_every_part(setup, agent, fixed_now):
    make_request(agent=agent, risk="high", now=fixed_now)
    assert jobs.sweep(now=fixed_now) == {"expired": 0, "breached": 0, "claims_lapsed": 0, "fired": 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_fire_each_step_exactly_once(admin_user, fixed_now):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    make_reviewer(queue, "rita")
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "queue_reviewers": True, "email": False}])
    agent = factories.make_agent("busy-bot")
    requests = [make_request(agent=agent, risk="high", now=fixed_now) for _ in range(60)]
    barrier = threading.Barrier(2)
    counts, errors = [], []

    def worker():
        try:
            barrier.wait(timeout=30)
            counts.append(jobs.fire_due_escalations(now=fixed_now))
        except Exception as exc:  # noqa: BLE001 - a worker that fails is a failed test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == []
    assert sum(counts) == len(requests)
    assert EscalationFiring.objects.count() == len(requests)
    assert Delivery.objects.filter(channel="in_app").count() == len(requests)  # one reviewer, once each
    assert set(ApprovalRequest.objects.values_list("escalation_step", flat=True)) == {1}

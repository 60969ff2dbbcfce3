import threading

import pytest
from django.db import connection

from approvals.models import ApprovalRequest, Decision, Status
from approvals.services import (
    AlreadyClaimed,
    AlreadyDecided,
    NotReviewer,
    claim_request,
    decide_request,
    release_request,
)
from console.models import AuditEntry
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule


@pytest.fixture
def queue(db):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    return queue


@pytest.mark.django_db
def test_an_edit_is_stored_as_the_final_arguments_and_audited(agent, queue):
    rita = make_reviewer(queue, "rita")
    req = make_request(agent=agent, arguments={"amount": 900})
    decided = decide_request(request_id=req.pk, reviewer=rita, verdict="modify", reason="cap",
                             reason_category="wrong_arguments", arguments={"amount": 500})
    assert decided.status == Status.APPROVED
    assert decided.arguments == {"amount": 900}
    assert decided.final_arguments == {"amount": 500}
    decision = Decision.objects.get(request=req)
    assert (decision.verdict, decision.reason_category, decision.arguments) == ("modify", "wrong_arguments",
                                                                                {"amount": 500})
    assert AuditEntry.objects.filter(action="approval.decided", target_id=str(req.pk), actor="user:rita").exists()


@pytest.mark.django_db
def test_the_second_reviewer_is_told_who_decided(agent, queue):
    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    req = make_request(agent=agent)
    decide_request(request_id=req.pk, reviewer=rita, verdict="reject", reason="no")
    with pytest.raises(AlreadyDecided) as info:
        decide_request(request_id=req.pk, reviewer=rob, verdict="approve", reason="yes")
    assert info.value.decided_by == "rita"
    assert "rejected by rita" in str(info.value)


@pytest.mark.django_db
def test_a_non_member_may_not_decide(agent, queue, reviewer):
    req = make_request(agent=agent)
    with pytest.raises(NotReviewer):
        decide_request(request_id=req.pk, reviewer=reviewer, verdict="approve", reason="x")
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


@pytest.mark.django_db
def test_a_claim_shows_who_has_it_and_expires(agent, queue, fixed_now):
    from datetime import timedelta

    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    req = make_request(agent=agent, now=fixed_now)
    claimed = claim_request(request_id=req.pk, reviewer=rita, now=fixed_now)
    assert claimed.claimed_by == rita
    with pytest.raises(AlreadyClaimed) as info:
        claim_request(request_id=req.pk, reviewer=rob, now=fixed_now + timedelta(minutes=5))
    assert "rita" in str(info.value)
    later = claim_request(request_id=req.pk, reviewer=rob, now=fixed_now + timedelta(minutes=11))
    assert later.claimed_by == rob
    with pytest.raises(Exception):
        release_request(request_id=req.pk, reviewer=rita, now=fixed_now + timedelta(minutes=12))
    released = release_request(request_id=req.pk, reviewer=rob, now=fixed_now + timedelta(minutes=12))
    assert released.claimed_by is None and released.escalation_epoch == 1  # a release restarts escalation


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_reviewers_at_once_make_one_decision_and_nineteen_are_told_the_winner(agent):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    reviewers = [make_reviewer(queue, f"rev{i:02d}") for i in range(20)]
    req = make_request(agent=agent)
    barrier = threading.Barrier(len(reviewers))
    outcomes, lock = {}, threading.Lock()

    def decide(reviewer, verdict):
        try:
            barrier.wait(timeout=30)
            decide_request(request_id=req.pk, reviewer=reviewer, verdict=verdict, reason="at once")
            result = ("won", None)
        except AlreadyDecided as exc:
            result = ("lost", exc.decided_by)
        finally:
            connection.close()
        with lock:
            outcomes[reviewer.username] = result

    threads = [threading.Thread(target=decide, args=(r, "approve" if i % 2 else "reject"))
               for i, r in enumerate(reviewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    winners = [name for name, (kind, _) in outcomes.items() if kind == "won"]
    losers = [who for kind, who in outcomes.values() if kind == "lost"]
    assert len(winners) == 1
    assert losers == [winners[0]] * 19
    assert Decision.objects.filter(request=req).count() == 1
    final = ApprovalRequest.objects.get(pk=req.pk)
    assert final.decider == winners[0]
    assert AuditEntry.objects.filter(action="approval.decided", target_id=str(req.pk)).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_idempotency_key_create_one_request(agent):
    from approvals.services import NewRequest, create_request

    barrier = threading.Barrier(8)
    ids, lock = [], threading.Lock()

    def create():
        try:
            barrier.wait(timeout=30)
            req, _ = create_request(agent=agent, new=NewRequest(action="deploy", risk="high", arguments={}),
                                    idempotency_key="same-key")
            with lock:
                ids.append(req.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert ApprovalRequest.objects.filter(agent=agent).count() == 1

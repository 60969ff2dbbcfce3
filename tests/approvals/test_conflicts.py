"""Conflicts: two pending or running actions on one resource; the later one waits for arbitration."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from approvals import jobs
from approvals.models import ApprovalRequest, Arbitration, ConflictState, Status
from approvals.services import (
    InvalidDecision,
    NotReviewer,
    decide_request,
    expire_overdue,
    record_execution,
)
from approvals.services import conflicts
from approvals.services.conflicts import (
    AlreadyArbitrated,
    CannotGoFirst,
    HeldForConflict,
    arbitrate_conflict,
    release_stale_holds,
)
from console.models import AuditEntry
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

CUSTOMER = "crm:customer:42"


@pytest.fixture
def crm(db):
    queue = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=queue, order=10)
    return queue


@pytest.fixture
def rita(crm):
    return make_reviewer(crm, "rita")


@pytest.fixture
def bots(db):
    return factories.make_agent("support-bot"), factories.make_agent("data-ops")


def ask(agent, action="crm.update", risk="high", resource=CUSTOMER, **fields):
    return make_request(agent=agent, action=action, risk=risk, resource=resource,
                        arguments=fields.pop("arguments", {"customer_id": 42, "by": agent.name}), **fields)


def fresh(req) -> ApprovalRequest:
    return ApprovalRequest.objects.get(pk=req.pk)


def audited(action: str, req) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, target_id=str(req.pk)))


# --- detection ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_pending_request_on_the_same_resource_is_held_for_a_human(crm, bots):
    first = ask(bots[0])
    later = ask(bots[1])
    assert first.conflict_state == "" and first.conflict_with is None
    later = fresh(later)
    assert later.status == Status.PENDING
    assert (later.conflict_with_id, later.conflict_state, later.conflict_rule) == (first.pk, "held", "ask_human")
    assert later.queue == crm
    entry = audited("approval.conflict_detected", later)[0]
    assert entry.after["with"] == first.pk and entry.after["outcome"] == "hold"


@pytest.mark.django_db
def test_an_approved_but_unexecuted_request_still_holds_its_resource(crm, bots, rita):
    first = ask(bots[0])
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    later = fresh(ask(bots[1]))
    assert later.conflict_with_id == first.pk and later.conflict_state == "held"


@pytest.mark.django_db
def test_an_executed_or_long_approved_request_holds_nothing(crm, bots, rita):
    executed = ask(bots[0])
    decide_request(request_id=executed.pk, reviewer=rita, verdict="approve", reason="ok")
    record_execution(request_id=executed.pk, agent=bots[0], result={"ok": True})
    assert fresh(ask(bots[1])).conflict_state == ""

    stale = ask(bots[0], resource="crm:customer:7")
    decide_request(request_id=stale.pk, reviewer=rita, verdict="approve", reason="ok")
    bound = conflicts.running_seconds()
    later = ask(bots[1], resource="crm:customer:7", now=timezone.now() + timedelta(seconds=bound + 1))
    assert fresh(later).conflict_state == ""


@pytest.mark.django_db
def test_different_or_empty_resources_never_conflict(crm, bots):
    ask(bots[0], resource="crm:customer:1")
    other = ask(bots[1], resource="crm:customer:2")
    ask(bots[0], resource="")
    blank = ask(bots[1], resource="")
    assert fresh(other).conflict_state == "" and fresh(blank).conflict_state == ""


@pytest.mark.django_db
def test_an_action_a_rule_would_allow_at_once_is_held_instead_of_run(crm, bots):
    make_rule(name="allow-notes", action_pattern="crm.note", outcome="allow", order=1)
    first = ask(bots[0])
    later = fresh(ask(bots[1], action="crm.note", risk="low"))
    assert later.status == Status.PENDING and later.conflict_state == "held"
    assert later.decider == "" and later.final_arguments is None and later.queue is not None


@pytest.mark.django_db
def test_a_request_denied_at_once_never_conflicts(crm, bots):
    make_rule(name="deny-wipe", action_pattern="crm.wipe", outcome="deny", order=1)
    ask(bots[0])
    denied = fresh(ask(bots[1], action="crm.wipe"))
    assert denied.status == Status.REJECTED and denied.conflict_state == ""


# --- arbitration rules ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_wins_rejects_the_later_one_naming_the_first(crm, bots):
    crm.conflict_rule = "first_wins"
    crm.save()
    first = ask(bots[0])
    later = fresh(ask(bots[1]))
    assert later.status == Status.REJECTED
    assert later.reason == f"conflict: #{first.pk} holds {CUSTOMER}"
    assert later.decider == "system:conflict" and later.arbitration == Arbitration.FIRST_WINS
    assert fresh(first).status == Status.PENDING


@pytest.mark.django_db
def test_higher_risk_waits_for_the_lower_risk_one(crm, bots):
    crm.conflict_rule = "higher_risk_waits"
    crm.save()
    first = ask(bots[0], risk="high")
    later = fresh(ask(bots[1], risk="critical"))
    assert (later.conflict_state, later.arbitration) == ("waiting", "higher_risk_waits")
    assert fresh(first).conflict_state == ""


@pytest.mark.django_db
def test_a_lower_risk_newcomer_goes_first_and_the_pending_holder_waits(crm, bots, rita):
    crm.conflict_rule = "higher_risk_waits"
    crm.save()
    first = ask(bots[0], risk="critical")
    later = fresh(ask(bots[1], risk="medium"))
    first = fresh(first)
    assert (later.conflict_state, later.arbitration) == ("resolved", "lower_risk_first")
    assert (first.conflict_state, first.conflict_with_id, first.arbitration) == ("waiting", later.pk, "yielded")
    with pytest.raises(HeldForConflict):
        decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="go")
    assert fresh(first).status == Status.PENDING
    decide_request(request_id=later.pk, reviewer=rita, verdict="reject", reason="not now",
                   reason_category="other")
    first = fresh(first)
    assert first.status == Status.PENDING and first.conflict_state == "resolved" and not first.is_held
    assert decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="go").status == "approved"


@pytest.mark.django_db
def test_a_running_holder_never_waits_even_for_a_lower_risk_newcomer(crm, bots, rita):
    crm.conflict_rule = "higher_risk_waits"
    crm.save()
    first = ask(bots[0], risk="critical")
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    later = fresh(ask(bots[1], risk="low"))
    assert later.conflict_state == "waiting" and fresh(first).conflict_state == ""


# --- release when the first finishes -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_held_request_is_released_when_the_first_is_rejected(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    with pytest.raises(HeldForConflict):
        decide_request(request_id=later.pk, reviewer=rita, verdict="approve", reason="go")
    decide_request(request_id=first.pk, reviewer=rita, verdict="reject", reason="no", reason_category="other")
    later = fresh(later)
    assert (later.status, later.conflict_state, later.arbitration) == ("pending", "resolved", "released")
    assert audited("approval.conflict_released", later)
    assert decide_request(request_id=later.pk, reviewer=rita, verdict="approve", reason="go").status == "approved"


@pytest.mark.django_db
def test_a_held_request_is_released_when_the_first_reports_its_execution(crm, bots, rita):
    make_rule(name="allow-notes", action_pattern="crm.note", outcome="allow", order=1)
    first = ask(bots[0])
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    later = ask(bots[1], action="crm.note", risk="low")
    assert fresh(later).is_held
    record_execution(request_id=first.pk, agent=bots[0], result={"ok": True})
    later = fresh(later)
    # Released into routing: the allow rule decides it now.
    assert later.status == Status.APPROVED and later.decider == "rule:allow-notes"
    assert later.final_arguments == later.arguments


@pytest.mark.django_db
def test_a_held_request_is_released_when_the_first_expires(crm, bots):
    now = timezone.now()
    first = ask(bots[0], timeout_s=60, now=now)
    later = ask(bots[1], now=now)
    assert expire_overdue(now=now + timedelta(seconds=61)) == 1
    assert fresh(first).status == Status.EXPIRED
    assert fresh(later).conflict_state == "resolved"


@pytest.mark.django_db
def test_the_second_held_request_waits_on_the_first_released_one(crm, bots, rita):
    first = ask(bots[0])
    second = ask(bots[1])
    third = ask(factories.make_agent("deploy-bot"))
    assert fresh(third).conflict_with_id == first.pk
    decide_request(request_id=first.pk, reviewer=rita, verdict="reject", reason="no", reason_category="other")
    assert fresh(second).conflict_state == "resolved"
    third = fresh(third)
    assert third.is_held and third.conflict_with_id == second.pk
    assert audited("approval.conflict_repointed", third)


@pytest.mark.django_db
def test_the_sweep_releases_a_request_held_by_one_that_ran_past_the_bound(crm, bots, rita):
    first = ask(bots[0])
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    later = ask(bots[1])
    now = timezone.now()
    assert release_stale_holds(now=now) == 0 and fresh(later).is_held
    later_now = now + timedelta(seconds=conflicts.running_seconds() + 5)
    assert jobs.release_stale_conflicts(now=later_now) == 1
    assert fresh(later).conflict_state == "resolved"
    assert jobs.release_stale_conflicts(now=later_now) == 0  # idempotent


# --- a reviewer arbitrates ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reviewer_lets_the_held_one_go_first_and_the_other_waits(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    done = arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="this_first", reason="urgent fix")
    assert (done.conflict_state, done.arbitration, done.arbitrated_by) == ("resolved", "this_first", rita)
    assert done.status == Status.PENDING and not done.is_held
    first = fresh(first)
    assert (first.conflict_state, first.conflict_with_id) == ("waiting", later.pk)
    entry = audited("approval.conflict_arbitrated", later)[0]
    assert entry.actor == "user:rita" and entry.after["choice"] == "this_first"
    assert entry.after["reason"] == "urgent fix"
    assert audited("approval.conflict_yielded", first)
    decide_request(request_id=later.pk, reviewer=rita, verdict="approve", reason="go")
    record_execution(request_id=later.pk, agent=bots[1], result={"ok": True})
    assert fresh(first).conflict_state == "resolved"


@pytest.mark.django_db
def test_a_reviewer_lets_the_other_go_first(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    done = arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="other_first", reason="it was first")
    assert (done.conflict_state, done.arbitration) == ("waiting", "other_first")
    decide_request(request_id=first.pk, reviewer=rita, verdict="reject", reason="no", reason_category="other")
    assert fresh(later).conflict_state == "resolved" and fresh(later).arbitration == "other_first"


@pytest.mark.django_db
def test_a_reviewer_rejects_the_held_one_with_a_reason_naming_the_other(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    done = arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="reject", reason="duplicate edit")
    assert done.status == Status.REJECTED and done.decider == "rita"
    assert done.reason == f"conflict: #{first.pk} holds {CUSTOMER} — duplicate edit"
    assert fresh(first).status == Status.PENDING and fresh(first).conflict_state == ""


@pytest.mark.django_db
def test_a_second_arbitration_is_told_who_was_first(crm, bots, rita):
    ask(bots[0])
    later = ask(bots[1])
    rob = make_reviewer(crm, "rob")
    arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="other_first", reason="wait")
    with pytest.raises(AlreadyArbitrated) as info:
        arbitrate_conflict(request_id=later.pk, reviewer=rob, choice="reject", reason="no")
    assert "rita" in str(info.value)
    assert fresh(later).status == Status.PENDING


@pytest.mark.django_db
def test_the_held_one_cannot_go_first_past_a_running_action(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    with pytest.raises(CannotGoFirst):
        arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="this_first", reason="mine")
    assert fresh(later).conflict_state == ConflictState.HELD


@pytest.mark.django_db
def test_arbitration_needs_a_choice_and_a_reason(crm, bots, rita):
    ask(bots[0])
    later = ask(bots[1])
    with pytest.raises(InvalidDecision, match="reason"):
        arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="reject", reason="  ")
    with pytest.raises(InvalidDecision, match="choice"):
        arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="coin_flip", reason="x")


@pytest.mark.django_db
def test_an_operator_or_a_reviewer_of_another_queue_may_not_arbitrate(crm, bots, operator, reviewer):
    ask(bots[0])
    later = ask(bots[1])
    for user in (operator, reviewer):
        with pytest.raises(NotReviewer):
            arbitrate_conflict(request_id=later.pk, reviewer=user, choice="reject", reason="no")
    assert fresh(later).conflict_state == "held"


# --- PostgreSQL races ---------------------------------------------------------------------------------


def _race(workers: int, work) -> list:
    barrier = threading.Barrier(workers)
    results, lock = [], threading.Lock()

    def run(i):
        try:
            barrier.wait(timeout=30)
            outcome = work(i)
        except Exception as exc:  # noqa: BLE001 - the losers' errors are part of the result
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_agents_asking_at_once_on_one_resource_leave_exactly_one_free(crm):
    agents = [factories.make_agent(f"racer-{i}") for i in range(6)]
    results = _race(6, lambda i: ask(agents[i]).pk)
    assert all(isinstance(r, int) for r in results), results
    rows = list(ApprovalRequest.objects.filter(resource=CUSTOMER))
    free = [r for r in rows if not r.conflict_state]
    held = [r for r in rows if r.conflict_state == "held"]
    assert len(rows) == 6 and len(free) == 1 and len(held) == 5
    assert {r.conflict_with_id for r in held} == {free[0].pk}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reviewers_arbitrating_at_once_resolve_the_conflict_exactly_once(crm, bots):
    ask(bots[0])
    later = ask(bots[1])
    reviewers = [make_reviewer(crm, f"arb-{i}") for i in range(5)]
    choices = ["this_first", "other_first", "reject", "other_first", "reject"]
    results = _race(5, lambda i: arbitrate_conflict(request_id=later.pk, reviewer=reviewers[i],
                                                     choice=choices[i], reason=f"r{i}").arbitration)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1, results
    assert all(isinstance(r, AlreadyArbitrated) for r in results if not isinstance(r, str)), results
    assert AuditEntry.objects.filter(action="approval.conflict_arbitrated", target_id=str(later.pk)).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_held_while_the_first_is_rejected_at_once_is_released(crm, bots):
    rita = make_reviewer(crm, "rita")
    first = ask(bots[0])
    agents = [factories.make_agent(f"late-{i}") for i in range(3)]

    def work(i):
        if i == 0:
            return decide_request(request_id=first.pk, reviewer=rita, verdict="reject", reason="no",
                                  reason_category="other").status
        return ask(agents[i]).pk

    results = _race(3, work)
    assert not [r for r in results if isinstance(r, Exception)], [str(r) for r in results]
    release_stale_holds(now=timezone.now())  # a release the decision could not lock is the sweep's
    rows = list(ApprovalRequest.objects.filter(resource=CUSTOMER).exclude(pk=first.pk))
    assert len([r for r in rows if not r.is_held]) == 1
    assert all(r.conflict_with_id != first.pk for r in rows if r.is_held)


# --- the agent's API ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_answers_a_held_request_as_pending_with_the_conflict(client, crm, bots):
    _key, plain = factories.make_key(bots[1])
    first = ask(bots[0])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}
    created = client.post("/api/v1/approvals", {"action": "crm.update", "risk": "high", "resource": CUSTOMER,
                                                "arguments": {"customer_id": 42}},
                          content_type="application/json", **headers)
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "pending"
    assert body["conflict"] == {"with": first.pk, "state": "held", "resource": CUSTOMER, "rule": "ask_human",
                                "arbitration": None}
    shown = client.get(f"/api/v1/approvals/{body['id']}", **headers).json()
    assert shown["status"] == "pending" and shown["conflict"]["state"] == "held"
    # A request without a conflict says so, and keeps every other field.
    other = client.post("/api/v1/approvals", {"action": "crm.update", "risk": "high", "resource": "crm:customer:9"},
                        content_type="application/json", **headers).json()
    assert other["conflict"] is None and {"id", "status", "due_at", "queue", "url", "digest"} <= set(other)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_a_long_poll_on_a_held_request_wakes_when_a_reviewer_rejects_it(crm, bots):
    import time

    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from approvals import waiters

    _key, plain = await sync_to_async(factories.make_key)(bots[1])
    rita = await sync_to_async(make_reviewer)(crm, "rita")
    await sync_to_async(ask)(bots[0])
    later = await sync_to_async(ask)(bots[1])

    def arbitrate_once_someone_waits():
        try:
            for _ in range(400):
                if waiters.waiting_count():  # the agent waits in this process
                    break
                time.sleep(0.025)
            arbitrate_conflict(request_id=later.pk, reviewer=rita, choice="reject", reason="duplicate")
        finally:
            connection.close()

    thread = threading.Thread(target=arbitrate_once_someone_waits)
    thread.start()
    try:
        response = await AsyncClient().get(f"/api/v1/approvals/{later.pk}?wait=30",
                                           headers={"Authorization": f"Bearer {plain}"})
    finally:
        thread.join(timeout=30)
        await waiters.stop()
        await sync_to_async(lambda: connection.close())()
    data = response.json()
    assert data["status"] == "rejected" and data["decided_by"] == "rita"
    assert data["conflict"]["state"] == "resolved" and data["conflict"]["arbitration"] == "rejected"


# --- the reviewer's pages ---------------------------------------------------------------------------


def _login(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


@pytest.mark.django_db
def test_the_decision_page_shows_both_requests_side_by_side(crm, bots, rita):
    first = ask(bots[0], arguments={"customer_id": 42, "email": "<b>new@example.test</b>"}, trace_id="ab" * 16)
    later = ask(bots[1], action="crm.merge", risk="critical", arguments={"customer_id": 42, "into": 43})
    html = _login(rita).get(f"/approvals/{later.pk}/").content.decode()
    assert 'data-testid="conflict-panel"' in html and 'data-conflict-state="held"' in html
    assert "crm.merge" in html and "crm.update" in html
    assert "&quot;into&quot;: 43" in html and "&lt;b&gt;new@example.test&lt;/b&gt;" in html  # escaped JSON
    assert f"/runs/{'ab' * 16}/" in html and "support-bot" in html and "data-ops" in html
    for label in ("Let this one go first", "Let the other go first", "Reject this one"):
        assert label in html
    # The first request's page lists what waits for it, without arbitration buttons.
    first_html = _login(rita).get(f"/approvals/{first.pk}/").content.decode()
    assert 'data-testid="conflict-waiters"' in first_html and "Reject this one" not in first_html


@pytest.mark.django_db
def test_my_queue_marks_held_requests(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    html = _login(rita).get("/approvals/").content.decode()
    assert html.count('data-testid="conflict-mark"') == 1
    assert f"conflict with <a href=\"/approvals/{first.pk}/\">#{first.pk}</a>" in html
    assert later.pk != first.pk


@pytest.mark.django_db
def test_a_reviewer_arbitrates_over_http_and_the_panel_shows_the_result(crm, bots, rita):
    ask(bots[0])
    later = ask(bots[1])
    c = _login(rita)
    response = c.post(f"/approvals/{later.pk}/arbitrate/", {"choice": "other_first", "reason": "first come"},
                      HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-conflict-state="waiting"' in html and "first come" in html and "rita" in html
    again = c.post(f"/approvals/{later.pk}/arbitrate/", {"choice": "reject", "reason": "x"}, HTTP_HX_REQUEST="true")
    assert again.status_code == 409 and "Already arbitrated by rita" in again.content.decode()


@pytest.mark.django_db
def test_arbitration_without_a_reason_names_the_field(crm, bots, rita):
    ask(bots[0])
    later = ask(bots[1])
    response = _login(rita).post(f"/approvals/{later.pk}/arbitrate/", {"choice": "reject", "reason": ""},
                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert 'data-field-error="reason"' in response.content.decode()
    assert fresh(later).conflict_state == "held"


@pytest.mark.django_db
@pytest.mark.parametrize("who, status", [("anonymous", 302), ("none", 403), ("operator", 403),
                                         ("outsider", 404), ("member", 302), ("admin", 302)])
def test_who_may_arbitrate_over_http(crm, bots, clients_by_role, who, status):
    ask(bots[0])
    later = ask(bots[1])
    if who == "outsider":
        c = _login(factories.make_user("Reviewer", username="olga"))
    elif who == "member":
        c = _login(make_reviewer(crm, "mia"))
    else:
        c = clients_by_role[who]
    response = c.post(f"/approvals/{later.pk}/arbitrate/", {"choice": "reject", "reason": "no"})
    assert response.status_code == status
    rejected = fresh(later).status == Status.REJECTED
    assert rejected == (who in ("member", "admin"))
    if rejected:
        assert response["Location"] == f"/approvals/{later.pk}/"


@pytest.mark.django_db
def test_the_admin_sets_a_queues_conflict_rule_audited(admin_client_, crm, reviewer):
    response = admin_client_.post(f"/queues/{crm.pk}/", {
        "description": "", "sla_critical": "10", "sla_high": "30", "sla_medium": "240", "sla_low": "1440",
        "conflict_rule": "first_wins"})
    assert response.status_code == 302
    crm.refresh_from_db()
    assert crm.conflict_rule == "first_wins"
    entry = AuditEntry.objects.get(action="queue.conflict_rule_changed")
    assert entry.before == {"conflict_rule": "ask_human"} and entry.after == {"conflict_rule": "first_wins"}
    bad = admin_client_.post(f"/queues/{crm.pk}/", {
        "sla_critical": "10", "sla_high": "30", "sla_medium": "240", "sla_low": "1440", "conflict_rule": "coin"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()
    assert _login(reviewer).get(f"/queues/{crm.pk}/").status_code == 403
    assert "first wins" in admin_client_.get("/policies/").content.decode()


@pytest.mark.django_db
def test_the_decision_form_refuses_to_approve_a_held_request_and_says_why(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    c = _login(rita)
    response = c.post(f"/approvals/{later.pk}/decide/", {"verdict": "approve", "reason": "looks fine"},
                      HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert f"Held: #{first.pk} also acts on {CUSTOMER}" in response.content.decode()
    assert fresh(later).status == Status.PENDING and not fresh(later).decisions.exists()
    rejected = c.post(f"/approvals/{later.pk}/decide/", {"verdict": "reject", "reason": "dup",
                                                         "reason_category": "other"}, HTTP_HX_REQUEST="true")
    assert rejected.status_code == 200 and fresh(later).status == Status.REJECTED
    assert fresh(later).conflict_shown_state == "resolved"


@pytest.mark.django_db
def test_a_held_request_offers_only_reject_and_says_why(crm, bots, rita):
    first = ask(bots[0])
    later = ask(bots[1])
    c = _login(rita)
    held_html = c.get(f"/approvals/{later.pk}/").content.decode()
    assert 'data-testid="held-no-approve"' in held_html
    assert 'value="approve"' not in held_html and 'value="modify"' not in held_html
    assert 'name="verdict" value="reject"' in held_html
    free_html = c.get(f"/approvals/{first.pk}/").content.decode()
    assert 'value="approve"' in free_html and 'data-testid="held-no-approve"' not in free_html


@pytest.mark.django_db
def test_the_overview_counts_held_requests_per_queue(crm, bots, rita, operator_client):
    import re

    ask(bots[0])
    later = ask(bots[1])

    def held_cell() -> str:
        html = operator_client.get("/approvals/overview/").content.decode()
        row = re.search(r'<tr data-queue="crm">.*?</tr>', html, re.S).group(0)
        return re.search(r'data-testid="held"[^>]*>(\d+)<', row).group(1)

    assert held_cell() == "1"
    decide_request(request_id=later.pk, reviewer=rita, verdict="reject", reason="dup", reason_category="other")
    assert held_cell() == "0"

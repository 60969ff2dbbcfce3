"""Four eyes: a rule or SLA policy asking for two approvals from two different reviewers.

The request stays pending after the first approval, the same reviewer cannot give the
second, one reject ends it, and the second approver approves exactly what the first did
(edits included). Service, API and UI paths; the races on real PostgreSQL with threads.
"""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from approvals import services
from approvals.models import ApprovalRequest, Decision, Status, arguments_digest
from approvals.services import (
    AlreadyDecided,
    ArgumentsChanged,
    EditAfterApproval,
    SameReviewer,
    decide_request,
)
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

HTMX = {"HTTP_HX_REQUEST": "true"}
ARGS = {"amount": 900, "order": "A-1"}


@pytest.fixture
def queue(db):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    return queue


@pytest.fixture
def rita(queue):
    return make_reviewer(queue, "rita")


@pytest.fixture
def rob(queue):
    return make_reviewer(queue, "rob")


@pytest.fixture
def req(agent, queue):
    return make_request(agent=agent, arguments=dict(ARGS))


def audit_actions(req) -> list[str]:
    return list(AuditEntry.objects.filter(target_type="approvals.approvalrequest", target_id=str(req.pk))
                .order_by("id").values_list("action", flat=True))


# --- how many approvals a request needs ---------------------------------------------------------


@pytest.mark.django_db
def test_a_rule_or_an_sla_policy_asking_for_two_makes_the_request_need_two(agent):
    one_queue, policy_queue = make_queue("ones"), make_queue("policy")
    make_rule(name="to-ones", action_pattern="ones.*", queue=one_queue, order=1)
    make_rule(name="to-twos", action_pattern="twos.*", queue=one_queue, order=2, required_approvals=2)
    make_rule(name="to-policy", action_pattern="policy.*", queue=policy_queue, order=3)
    services.set_sla_policy(queue_id=policy_queue.pk, risk="critical", minutes=10, actor="system:test",
                            required_approvals=2)
    assert make_request(agent=agent, action="ones.x").required_approvals == 1
    assert make_request(agent=agent, action="twos.x").required_approvals == 2
    assert make_request(agent=agent, action="policy.x", risk="critical").required_approvals == 2
    assert make_request(agent=agent, action="policy.x", risk="high").required_approvals == 1


@pytest.mark.django_db
def test_changing_an_sla_policys_minutes_keeps_its_four_eyes():
    queue = make_queue("keep")
    services.set_sla_policy(queue_id=queue.pk, risk="high", minutes=30, actor="system:test", required_approvals=2)
    policy = services.set_sla_policy(queue_id=queue.pk, risk="high", minutes=45, actor="system:test")
    assert (policy.minutes, policy.required_approvals) == (45, 2)


# --- the service ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_first_approval_is_recorded_audited_and_pushed_but_the_request_stays_pending(
        req, rita, monkeypatch, django_capture_on_commit_callbacks):
    from approvals import live

    pushed, woken = [], []
    monkeypatch.setattr(live, "push_request_changed_on_commit", lambda pk, queue_id: pushed.append(pk))
    monkeypatch.setattr(live, "notify_waiters_on_commit", lambda pk, status: woken.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        after = decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    assert after.status == Status.PENDING and after.decider == "" and after.final_digest == ""
    assert list(Decision.objects.filter(request=req).values_list("reviewer__username", "verdict")) == [
        ("rita", "approve")]
    assert audit_actions(req)[-1] == "approval.approval_given"
    entry = AuditEntry.objects.filter(action="approval.approval_given", target_id=str(req.pk)).get()
    assert entry.after["approvals"] == 1 and entry.after["required_approvals"] == 2
    assert pushed == [req.pk]  # the cards re-render showing 1 of 2
    assert woken == []  # a waiting agent is not told anything yet


@pytest.mark.django_db
def test_the_same_reviewer_cannot_give_the_second_approval(req, rita):
    decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    with pytest.raises(SameReviewer, match="different reviewer"):
        decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="again")
    with pytest.raises(SameReviewer):  # nor take it back with a reject of their own
        decide_request(request_id=req.pk, reviewer=rita, verdict="reject", reason="changed my mind")
    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert Decision.objects.filter(request=req).count() == 1


@pytest.mark.django_db
def test_a_second_approval_by_another_reviewer_approves(req, rita, rob):
    decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    final = decide_request(request_id=req.pk, reviewer=rob, verdict="approve", reason="agreed")
    assert final.status == Status.APPROVED and final.decider == "rob"
    assert final.final_arguments == ARGS and final.final_digest == req.arguments_digest
    assert list(final.decisions.values_list("reviewer__username", flat=True)) == ["rita", "rob"]
    assert audit_actions(req).count("approval.decided") == 1
    with pytest.raises(AlreadyDecided, match="approved by rita and rob"):
        decide_request(request_id=req.pk, reviewer=make_reviewer(req.queue, "sam"), verdict="reject",
                       reason="late", reason_category="risk")


@pytest.mark.django_db
def test_one_reject_ends_it_at_once(req, agent, queue, rita, rob):
    rejected = decide_request(request_id=req.pk, reviewer=rita, verdict="reject", reason="no", reason_category="risk")
    assert rejected.status == Status.REJECTED and rejected.decider == "rita"

    other = make_request(agent=agent, arguments={"amount": 5})
    decide_request(request_id=other.pk, reviewer=rita, verdict="approve", reason="fine")
    after = decide_request(request_id=other.pk, reviewer=rob, verdict="reject", reason="no", reason_category="risk")
    assert after.status == Status.REJECTED and after.decider == "rob" and after.final_arguments is None
    assert other.decisions.count() == 2


@pytest.mark.django_db
def test_the_second_approver_approves_exactly_the_first_approvers_edit(req, rita, rob):
    edited = {"amount": 500, "order": "A-1"}
    decide_request(request_id=req.pk, reviewer=rita, verdict="modify", reason="cap", arguments=edited)
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING
    with pytest.raises(EditAfterApproval):
        decide_request(request_id=req.pk, reviewer=rob, verdict="modify", reason="more", arguments={"amount": 700})
    with pytest.raises(ArgumentsChanged, match="rita approved them with edits"):  # rob's page showed the original
        decide_request(request_id=req.pk, reviewer=rob, verdict="approve", digest=req.arguments_digest)
    final = decide_request(request_id=req.pk, reviewer=rob, verdict="approve", reason="ok",
                           digest=arguments_digest(req.action, edited))
    assert final.status == Status.APPROVED
    assert final.final_arguments == edited and final.final_digest == arguments_digest(req.action, edited)
    assert final.answer_arguments == edited


# --- the API ----------------------------------------------------------------------------------------


def _decide_api(client, pk, body):
    return client.post(f"/api/v1/approvals/{pk}/decision", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_the_api_counts_approvals_and_refuses_the_same_reviewer_with_409(req, rita, rob, agent_headers):
    c_rita, c_rob = Client(), Client()
    c_rita.force_login(rita)
    c_rob.force_login(rob)
    url = f"/api/v1/approvals/{req.pk}"
    before = Client().get(url, **agent_headers).json()
    assert (before["required_approvals"], before["approvals_given"], before["status"]) == (2, 0, "pending")

    first = _decide_api(c_rita, req.pk, {"decision": "approve", "reason": "ok"})
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["approvals_given"]) == ("pending", 1)
    again = _decide_api(c_rita, req.pk, {"decision": "approve", "reason": "ok"})
    assert again.status_code == 409 and "different reviewer" in again.json()["detail"]
    polled = Client().get(url, **agent_headers).json()
    assert (polled["status"], polled["approvals_given"], polled["arguments"]) == ("pending", 1, None)

    second = _decide_api(c_rob, req.pk, {"decision": "approve", "reason": "ok", "digest": before["digest"]})
    assert second.status_code == 200
    done = Client().get(url, **agent_headers).json()
    assert (done["status"], done["approvals_given"], done["decided_by"]) == ("approved", 2, "rob")
    assert done["arguments"] == ARGS and done["digest"] == before["digest"]


@pytest.mark.django_db
def test_the_api_refuses_a_second_approval_for_arguments_that_changed(req, rita, rob):
    c_rita, c_rob = Client(), Client()
    c_rita.force_login(rita)
    c_rob.force_login(rob)
    edited = {"amount": 400, "order": "A-1"}
    assert _decide_api(c_rita, req.pk, {"decision": "modify", "reason": "cap", "arguments": edited}).status_code == 200
    stale = _decide_api(c_rob, req.pk, {"decision": "approve", "digest": req.arguments_digest})
    assert stale.status_code == 409 and "changed" in stale.json()["detail"]
    other_edit = _decide_api(c_rob, req.pk, {"decision": "modify", "arguments": {"amount": 1}})
    assert other_edit.status_code == 409 and "cannot change" in other_edit.json()["detail"]
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


# --- the reviewer UI --------------------------------------------------------------------------------


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page_digest(html: str) -> str:
    start = html.index('name="digest" value="') + len('name="digest" value="')
    return html[start:start + 64]


@pytest.mark.django_db
def test_the_decision_page_shows_n_of_m_and_refuses_the_first_approver_a_second_time(req, rita, rob):
    c_rita, c_rob = _login(rita), _login(rob)
    page = c_rita.get(f"/approvals/{req.pk}/").content.decode()
    assert "0 of 2 approvals" in page and "four eyes" in page
    digest = _page_digest(page)
    assert digest == req.arguments_digest

    answer = c_rita.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve", "reason": "fine", "digest": digest},
                         **HTMX)
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "1 of 2 approvals" in html and "rita" in html and "UTC" in html
    assert 'data-testid="second-approval-needed"' in html and 'name="verdict"' not in html

    again = c_rita.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve", "reason": "again", "digest": digest},
                        **HTMX)
    assert again.status_code == 409
    assert "different reviewer" in again.content.decode()
    assert Decision.objects.filter(request=req).count() == 1

    rob_page = c_rob.get(f"/approvals/{req.pk}/").content.decode()
    assert "1 of 2 approvals" in rob_page and "Approve by <strong>rita</strong>" in rob_page
    assert 'data-testid="second-approval-note"' in rob_page
    assert 'value="modify"' not in rob_page  # the second approval cannot edit
    done = c_rob.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve", "reason": "ok",
                                                        "digest": _page_digest(rob_page)}, **HTMX)
    assert done.status_code == 200
    assert "2 of 2 approvals" in done.content.decode()
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.APPROVED


@pytest.mark.django_db
def test_a_stale_page_cannot_approve_arguments_the_first_approver_edited(req, rita, rob):
    c_rita, c_rob = _login(rita), _login(rob)
    stale_digest = _page_digest(c_rob.get(f"/approvals/{req.pk}/").content.decode())
    edited = {"amount": 300, "order": "A-1"}
    c_rita.post(f"/approvals/{req.pk}/decide/", {"verdict": "modify", "reason": "cap",
                                                  "arguments": json.dumps(edited)}, **HTMX)
    refused = c_rob.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve", "digest": stale_digest}, **HTMX)
    html = refused.content.decode()
    assert refused.status_code == 409 and "changed since you loaded" in html
    assert _page_digest(html) == arguments_digest(req.action, edited)  # the form now carries the edit
    assert "&quot;amount&quot;: 300" in html
    page = c_rob.get(f"/approvals/{req.pk}/").content.decode()
    assert 'data-testid="proposal-arguments"' in page
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


@pytest.mark.django_db
def test_an_open_decision_page_is_given_the_second_approval_form_once_the_first_comes_in(req, rita, rob):
    c_rob = _login(rob)
    card_url = f"/approvals/{req.pk}/card/?ctx=detail&given-{req.pk}="
    assert f'id="decide-{req.pk}"' not in c_rob.get(card_url + "0", **HTMX).content.decode()
    decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    html = c_rob.get(card_url + "0", **HTMX).content.decode()
    assert f'id="decide-{req.pk}"' in html and 'data-testid="second-approval-note"' in html
    assert "1 of 2 approvals" in html
    # Already showing it (or no count sent): only the card, so nothing typed into the form is lost.
    assert f'id="decide-{req.pk}"' not in c_rob.get(card_url + "1", **HTMX).content.decode()
    assert f'id="decide-{req.pk}"' not in c_rob.get(f"/approvals/{req.pk}/card/?ctx=detail", **HTMX).content.decode()


@pytest.mark.django_db
def test_the_queue_marks_requests_needing_two_and_the_first_approver_waits(req, agent, queue, rita, rob):
    single_queue = make_queue("single")
    make_rule(name="to-single", action_pattern="single.*", queue=single_queue, order=1)
    single_queue.members.add(rita)
    single = make_request(agent=agent, action="single.refund")
    c_rita = _login(rita)
    listing = c_rita.get("/approvals/").content.decode()
    assert listing.count('data-testid="four-eyes"') == 1  # only the request needing two
    assert "0 of 2 approvals" in listing
    decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    listing = c_rita.get("/approvals/").content.decode()
    assert "1 of 2 approvals" in listing and 'data-testid="approved-by-me"' in listing
    assert f'data-key="j" href="/approvals/{single.pk}/"' in listing  # j opens what she can still decide
    card = c_rita.get(f"/approvals/{req.pk}/card/?ctx=queue").content.decode()
    assert "waiting for a different reviewer" in card and "Claim" not in card
    assert "Claim" in _login(rob).get(f"/approvals/{req.pk}/card/?ctx=queue").content.decode()
    # Next-request navigation skips what rita can no longer decide.
    detail = c_rita.get(f"/approvals/{single.pk}/").content.decode()
    assert f"/approvals/{req.pk}/" not in detail.split('data-testid="next-request"')[0][-200:]


# --- races on PostgreSQL ----------------------------------------------------------------------------


def run_at_once(calls) -> list:
    """Run each call in its own thread, released together; returns their results (or exceptions)."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def worker(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _approve(request_id, reviewer, verdict="approve"):
    return lambda: decide_request(request_id=request_id, reviewer=reviewer, verdict=verdict, reason="at once",
                                  reason_category="risk" if verdict == "reject" else "")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_approving_at_the_same_moment_make_one_approved_state_with_two_decisions(agent):
    queue = make_queue("race")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    for _ in range(5):
        req = make_request(agent=agent)
        results = run_at_once([_approve(req.pk, rita), _approve(req.pk, rob)])
        assert not [r for r in results if isinstance(r, Exception)], results
        req.refresh_from_db()
        assert req.status == Status.APPROVED
        assert Decision.objects.filter(request=req).count() == 2
        actions = audit_actions(req)
        assert actions.count("approval.approval_given") == 1 and actions.count("approval.decided") == 1
        assert sorted(r.status for r in results) == [Status.APPROVED, Status.PENDING]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_three_reviewers_at_once_on_a_four_eyes_request_never_make_a_third_approval(agent):
    queue = make_queue("race3")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    reviewers = [make_reviewer(queue, f"rev{i}") for i in range(3)]
    req = make_request(agent=agent)
    results = run_at_once([_approve(req.pk, r) for r in reviewers])
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(losers) == 1 and isinstance(losers[0], AlreadyDecided), results
    req.refresh_from_db()
    assert req.status == Status.APPROVED and Decision.objects.filter(request=req).count() == 2
    assert audit_actions(req).count("approval.decided") == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_rejections_and_approvals_never_make_a_double_final_decision(agent):
    queue = make_queue("race-mixed")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    first, *others = [make_reviewer(queue, f"rev{i}") for i in range(5)]
    for _ in range(3):
        req = make_request(agent=agent)
        decide_request(request_id=req.pk, reviewer=first, verdict="approve", reason="first")
        verdicts = ["approve", "reject", "approve", "reject"]
        results = run_at_once([_approve(req.pk, r, v) for r, v in zip(others, verdicts)])
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 3, results
        assert all(isinstance(e, AlreadyDecided) for e in losers)
        req.refresh_from_db()
        assert req.status == winners[0].status and req.status in (Status.APPROVED, Status.REJECTED)
        assert all(str(req.status) in str(e) for e in losers)  # each loser is told the outcome
        assert Decision.objects.filter(request=req).count() == 2
        assert audit_actions(req).count("approval.decided") == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_reviewer_double_submitting_at_once_gives_one_approval(agent):
    queue = make_queue("double-click")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    rita = make_reviewer(queue, "rita")
    req = make_request(agent=agent)
    results = run_at_once([_approve(req.pk, rita), _approve(req.pk, rita)])
    assert sorted(type(r).__name__ for r in results) == ["ApprovalRequest", "SameReviewer"]
    req.refresh_from_db()
    assert req.status == Status.PENDING and Decision.objects.filter(request=req).count() == 1


def test_roles_only_reviewers_of_the_queue_decide(db, req):
    outsider = factories.make_user(Role.REVIEWER, username="outsider")
    response = _decide_api(_login(outsider), req.pk, {"decision": "approve"})
    assert response.status_code == 404  # as the page below: a 403 would confirm the request exists
    assert _login(outsider).post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"}).status_code == 404

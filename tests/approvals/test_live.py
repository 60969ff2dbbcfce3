import pytest

from approvals import live as approvals_live
from approvals.services import decide_request
from console import live
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(live, "send_to_group", lambda group, html: calls.append((group, html)) or True)
    return calls


def test_new_and_decided_requests_signal_the_queue_and_the_approvals_page(agent, admin_user, sent,
                                                                         django_capture_on_commit_callbacks):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request(agent=agent)
    assert [g for g, _ in sent] == [f"queue-{queue.pk}", "approvals"]
    assert 'data-event="created"' in sent[0][1] and f"/approvals/{req.pk}/card/" in sent[0][1]
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        decide_request(request_id=req.pk, reviewer=admin_user, verdict="approve", reason="ok")
    assert [g for g, _ in sent] == [f"queue-{queue.pk}", "approvals"]
    assert f'hx-target="#request-{req.pk}"' in sent[0][1]


def test_the_signal_carries_no_agent_text(agent, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_request(agent=agent, summary="<img src=x onerror=alert(1)>")
    assert all("onerror" not in html for _g, html in sent)


def test_decisions_wake_waiters_after_commit(agent, admin_user, monkeypatch, django_capture_on_commit_callbacks):
    woken = []
    monkeypatch.setattr(approvals_live, "notify_waiters", lambda pk, status: woken.append((pk, status)))
    req = make_request(agent=agent)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decide_request(request_id=req.pk, reviewer=admin_user, verdict="reject", reason="no")
    assert woken == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert woken == [(req.pk, "rejected")]


def test_queue_topics_are_for_members_operators_and_admins(reviewer, operator, nobody):
    from console.live import may_subscribe

    queue = make_queue("payments")
    other = make_queue("data", members=[reviewer])
    assert not may_subscribe(reviewer, f"queue-{queue.pk}")
    assert may_subscribe(reviewer, f"queue-{other.pk}")
    assert may_subscribe(operator, f"queue-{queue.pk}")
    assert not may_subscribe(nobody, f"queue-{queue.pk}")
    assert not may_subscribe(reviewer, f"approval-{queue.pk}")  # waiter groups are not browser topics
    assert may_subscribe(reviewer, f"user-{reviewer.pk}") and not may_subscribe(reviewer, f"user-{operator.pk}")

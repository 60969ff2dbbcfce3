"""The reviewer side through the Django test client: queue, card, decision page, claim, decide."""

import json
import re

import pytest
from django.test import Client

from approvals import services
from approvals.models import ApprovalRequest, GuardianRule, Outcome, Queue, Status
from console.models import AuditEntry
from console.roles import Role
from tests import factories

HTMX = {"HTTP_HX_REQUEST": "true"}


def make_queue(name: str, *members) -> Queue:
    queue = Queue.objects.create(name=name)
    queue.members.set(members)
    GuardianRule.objects.create(name=f"to-{name}", action_pattern=f"{name}.*", outcome=Outcome.ASK, queue=queue,
                                order=10)
    return queue


def make_pending(agent, queue: Queue, *, action: str = "refund", risk: str = "high", **fields) -> ApprovalRequest:
    """A pending request routed to ``queue`` by the rule make_queue wrote (through the core service)."""
    new = services.NewRequest(action=f"{queue.name}.{action}", risk=risk,
                              arguments=fields.pop("arguments", {"amount": 120, "currency": "EUR"}),
                              summary=fields.pop("summary", "Refund order 42"), **fields)
    req, _ = services.create_request(agent=agent, new=new)
    assert req.status == Status.PENDING and req.queue_id == queue.pk
    return req


@pytest.fixture
def queue(reviewer):
    return make_queue("billing", reviewer)


@pytest.fixture
def req(agent, queue):
    return make_pending(agent, queue, resource="crm:customer:42")


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- my queue -----------------------------------------------------------------------------------


def test_my_queue_lists_requests_of_my_queues_sorted_by_due_time(reviewer_client, agent, queue):
    other = make_queue("ops", factories.make_user(Role.REVIEWER))
    low = make_pending(agent, queue, action="late", risk="medium")
    critical = make_pending(agent, queue, action="urgent", risk="critical")
    hidden = make_pending(agent, other, action="secret")
    response = reviewer_client.get("/approvals/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index(f'id="request-{critical.pk}"') < html.index(f'id="request-{low.pk}"')
    assert f'id="request-{hidden.pk}"' not in html
    assert f'data-due="{critical.due_at.isoformat()[:19]}' in html or "data-due=" in html
    assert 'ws-connect="/ws/live/queue-%d/"' % queue.pk in html
    assert 'ws-connect="/ws/live/queue-%d/"' % other.pk not in html


def test_my_queue_shows_an_empty_state(reviewer_client, queue):
    html = reviewer_client.get("/approvals/").content.decode()
    assert 'id="approval-list"' in html and "Nothing waits for you" in html
    assert "request-card" not in html.split('id="approval-list"')[1].split("</div>")[0]


def test_my_queue_pages_by_keyset(reviewer_client, agent, queue, monkeypatch):
    from approvals.views import requests as views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    made = [make_pending(agent, queue, action=f"a{i}") for i in range(5)]
    first = reviewer_client.get("/approvals/").content.decode()
    assert first.count('data-testid="request-card"') == 2
    cursor = first.split("?cursor=")[1].split('"')[0]
    second = reviewer_client.get(f"/approvals/?cursor={cursor}", **HTMX).content.decode()
    assert second.count('data-testid="request-card"') == 2
    ids = {r.pk for r in made}
    shown = {int(pk) for pk in re.findall(r'<article id="request-(\d+)"', first + second)}
    assert len(shown & ids) == 4
    assert 'id="approval-more" hx-swap-oob="true"' in second


def test_admin_sees_every_queue_and_listens_on_the_approvals_topic(admin_client_, req):
    html = admin_client_.get("/approvals/").content.decode()
    assert f'id="request-{req.pk}"' in html
    assert 'ws-connect="/ws/live/approvals/"' in html


# --- the card the live signal re-fetches ------------------------------------------------------------


def test_card_renders_the_one_article_for_a_member(reviewer_client, req):
    response = reviewer_client.get(f"/approvals/{req.pk}/card/?ctx=queue")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith(f'<article id="request-{req.pk}"')
    assert "Claim" in html


def test_card_is_empty_for_a_reviewer_of_another_queue(req):
    stranger = factories.make_user(Role.REVIEWER, username="sam")
    response = login(stranger).get(f"/approvals/{req.pk}/card/?ctx=queue")
    assert response.status_code == 200 and response.content.strip() == b""


def test_card_of_a_decided_request_is_empty_on_the_queue_page_but_shown_on_the_detail(reviewer, reviewer_client, req):
    services.decide_request(request_id=req.pk, reviewer=reviewer, verdict="approve")
    assert reviewer_client.get(f"/approvals/{req.pk}/card/?ctx=queue").content.strip() == b""
    detail_card = reviewer_client.get(f"/approvals/{req.pk}/card/?ctx=detail").content.decode()
    assert "Approved by" in detail_card and "rita" in detail_card


# --- decision page ------------------------------------------------------------------------------------


def test_decision_page_shows_what_why_rule_and_neighbours(reviewer_client, agent, queue, req):
    neighbour = make_pending(agent, queue, action="other", resource="crm:customer:42")
    html = reviewer_client.get(f"/approvals/{req.pk}/").content.decode()
    assert "billing.refund" in html and "crm:customer:42" in html
    assert "&quot;amount&quot;: 120" in html  # formatted, escaped JSON
    assert "to-billing" in html  # the rule that sent it here
    assert f"/approvals/{neighbour.pk}/" in html
    assert 'data-key="a"' in html and 'data-key="r"' in html and 'data-key="e"' in html and 'data-key="c"' in html
    assert 'data-key="j"' in html  # next request
    assert "The agent sent no trace" in html


def test_decision_page_links_the_prompt_version_and_trace(reviewer_client, agent, queue):
    req = make_pending(agent, queue, trace_id="ab" * 16, prompt_name="refunder", prompt_version="3")
    html = reviewer_client.get(f"/approvals/{req.pk}/").content.decode()
    assert "refunder" in html and "version <strong>3</strong>" in html
    assert f"/runs/{'ab' * 16}/" in html


def test_claim_shows_who_has_it_to_others(reviewer, reviewer_client, req, queue):
    colleague = factories.make_user(Role.REVIEWER, username="carl")
    queue.members.add(colleague)
    response = reviewer_client.post(f"/approvals/{req.pk}/claim/", {"ctx": "detail"}, **HTMX)
    assert response.status_code == 200
    assert "Claimed by you" in response.content.decode()
    other = login(colleague)
    assert "Claimed by <strong>rita</strong>" in other.get(f"/approvals/{req.pk}/").content.decode()
    conflict = other.post(f"/approvals/{req.pk}/claim/", {"ctx": "detail"}, **HTMX)
    assert conflict.status_code == 409 and "Already claimed by rita" in conflict.content.decode()
    assert AuditEntry.objects.filter(action="approval.claimed", target_id=str(req.pk)).count() == 1


def test_release_gives_the_claim_back(reviewer, reviewer_client, req):
    reviewer_client.post(f"/approvals/{req.pk}/claim/", {"ctx": "queue"}, **HTMX)
    response = reviewer_client.post(f"/approvals/{req.pk}/release/", {"ctx": "queue"}, **HTMX)
    assert response.status_code == 200 and "Unclaimed" in response.content.decode()
    req.refresh_from_db()
    assert req.claimed_by_id is None


def test_approve_with_edited_arguments_reaches_the_row_and_the_audit(reviewer_client, req):
    edited = {"amount": 100, "currency": "EUR"}
    response = reviewer_client.post(f"/approvals/{req.pk}/decide/", {
        "verdict": "modify", "reason_category": "wrong_arguments", "reason": "cap at 100",
        "arguments": json.dumps(edited)}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="decide-{req.pk}"' in html and f'<article id="request-{req.pk}"' in html
    assert 'hx-swap-oob="true"' in html
    req.refresh_from_db()
    assert req.status == Status.APPROVED and req.final_arguments == edited and req.decider == "rita"
    assert AuditEntry.objects.filter(action="approval.decided", target_id=str(req.pk)).exists()


def test_plain_post_decision_redirects_to_the_page(reviewer_client, req):
    response = reviewer_client.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"})
    assert response.status_code == 302 and response["Location"] == f"/approvals/{req.pk}/"


def test_bad_json_is_shown_beside_the_field_and_the_input_is_kept(reviewer_client, req):
    typed = '{"amount": 100,, "currency": "EUR"}'
    for headers in ({}, HTMX):
        response = reviewer_client.post(f"/approvals/{req.pk}/decide/",
                                        {"verdict": "modify", "arguments": typed, "reason": "my words"}, **headers)
        assert response.status_code == 400
        html = response.content.decode()
        assert 'data-field-error="arguments"' in html and "Not valid JSON" in html
        assert "{&quot;amount&quot;: 100,, &quot;currency&quot;: &quot;EUR&quot;}" in html
        assert "my words" in html
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_edited_arguments_must_be_an_object(reviewer_client, req):
    response = reviewer_client.post(f"/approvals/{req.pk}/decide/", {"verdict": "modify", "arguments": "[1, 2]"},
                                    **HTMX)
    assert response.status_code == 400 and "must be a JSON object" in response.content.decode()


def test_reject_needs_a_reason_category(reviewer_client, req):
    response = reviewer_client.post(f"/approvals/{req.pk}/decide/", {"verdict": "reject"}, **HTMX)
    assert response.status_code == 400 and 'data-field-error="reason_category"' in response.content.decode()


def test_second_reviewer_is_told_who_decided(reviewer_client, req, queue):
    colleague = factories.make_user(Role.REVIEWER, username="carl")
    queue.members.add(colleague)
    assert reviewer_client.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"}, **HTMX).status_code == 200
    late = login(colleague).post(f"/approvals/{req.pk}/decide/",
                                 {"verdict": "reject", "reason_category": "risk"}, **HTMX)
    assert late.status_code == 409
    html = late.content.decode()
    assert "Already approved by rita" in html
    assert f'<article id="request-{req.pk}"' in html  # the card re-rendered from the row
    plain = login(colleague).post(f"/approvals/{req.pk}/decide/", {"verdict": "reject", "reason_category": "risk"})
    assert plain.status_code == 409 and "Already approved by rita" in plain.content.decode()
    assert req.decisions.count() == 1


def test_operator_sees_the_page_but_gets_no_decision_form(operator_client, req):
    html = operator_client.get(f"/approvals/{req.pk}/").content.decode()
    assert 'data-key="a"' not in html and "Only reviewers of queue" in html


def test_next_link_goes_to_the_next_request_by_due_time(reviewer_client, agent, queue):
    first = make_pending(agent, queue, action="one", risk="critical")
    second = make_pending(agent, queue, action="two", risk="high")
    html = reviewer_client.get(f"/approvals/{first.pk}/").content.decode()
    assert f'href="/approvals/{second.pk}/" data-key="j"' in html


# --- overview and tile -----------------------------------------------------------------------------------


def test_overview_counts_depth_attainment_and_load(operator_client, reviewer, agent, queue):
    make_pending(agent, queue, action="a", risk="critical")
    make_pending(agent, queue, action="b", risk="high")
    done = make_pending(agent, queue, action="c", risk="high")
    services.claim_request(request_id=done.pk, reviewer=reviewer)
    services.decide_request(request_id=done.pk, reviewer=reviewer, verdict="approve")
    response = operator_client.get("/approvals/overview/")
    assert response.status_code == 200
    ctx = response.context
    row = next(r for r in ctx["queues"] if r["queue"].pk == queue.pk)
    assert row["pending"] == 2
    assert {d["risk"]: d["n"] for d in row["depth"]} == {"critical": 1, "high": 1, "medium": 0, "low": 0}
    assert row["today"] == {"total": 1, "in_time": 1, "percent": 100}
    assert row["p50"] is not None and row["p95"] is not None
    assert {"username": "rita", "claimed": 0, "decided": 1} in ctx["reviewers"]


def test_dashboard_shows_the_approvals_tile(reviewer_client, req):
    html = reviewer_client.get("/").content.decode()
    assert 'id="tile-approvals"' in html
    assert 'data-testid="approvals-pending">1<' in html


def test_nav_links_follow_roles(reviewer_client, operator_client, admin_client_):
    def nav(client):
        return client.get("/").content.decode().split('<nav aria-label="Main">')[1].split("</nav>")[0]

    r, o, a = nav(reviewer_client), nav(operator_client), nav(admin_client_)
    assert ">My queue<" in r and ">Approvals<" not in r and ">Policies<" not in r
    assert ">Approvals<" in o and ">My queue<" not in o
    assert ">Policies<" in a and ">My queue<" in a and ">Approvals<" in a


# --- untrusted agent input ------------------------------------------------------------------------------


EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"><a hx-get="/logout/" hx-trigger="load">x</a>'


def test_agent_text_is_escaped_everywhere(reviewer_client, agent, queue):
    req = make_pending(agent, queue, action="pay", summary=EVIL, resource=EVIL[:200],
                       arguments={"note": EVIL, EVIL[:40]: 1})
    pages = [reviewer_client.get("/approvals/"), reviewer_client.get(f"/approvals/{req.pk}/"),
             reviewer_client.get(f"/approvals/{req.pk}/card/?ctx=queue")]
    for response in pages:
        html = response.content.decode()
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert 'hx-get="/logout/"' not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_live_card_refetch_on_the_decision_page_removes_the_form_and_names_the_winner(reviewer, req, queue):
    colleague = factories.make_user(Role.REVIEWER, username="carl")
    queue.members.add(colleague)
    services.decide_request(request_id=req.pk, reviewer=reviewer, verdict="approve")
    html = login(colleague).get(f"/approvals/{req.pk}/card/?ctx=detail", **HTMX).content.decode()
    assert f'<section id="decide-{req.pk}" class="card decision" hx-swap-oob="true">' in html
    assert "Already approved by rita" in html and 'data-key="a"' not in html


def test_queue_rows_are_refetched_after_a_reconnect(reviewer_client, req):
    html = reviewer_client.get("/approvals/?rows=1", **HTMX).content.decode()
    assert html.strip().startswith(f'<article id="request-{req.pk}"')
    assert 'id="approval-more" hx-swap-oob="true"' in html


def test_decision_page_shows_the_runs_recent_spans_and_links_the_trace(reviewer_client, agent, queue):
    from datetime import timedelta

    from django.utils import timezone

    from traces.models import Run, Span

    trace_id = "cd" * 16
    run = Run.objects.create(trace_id=trace_id, agent=agent, name="refund flow", span_count=2)
    now = timezone.now()
    for seq, (name, text) in enumerate([("lookup_order", "order 42 found"),
                                        ("decide_refund", "<b>customer asked twice</b>")], start=1):
        Span.objects.create(run=run, span_id=f"{seq:016x}", name=name, start_time=now + timedelta(seconds=seq),
                            end_time=now + timedelta(seconds=seq + 1), output_text=text, seq=seq, received_at=now)
    req = make_pending(agent, queue, trace_id=trace_id)
    html = reviewer_client.get(f"/approvals/{req.pk}/").content.decode()
    assert html.index("lookup_order") < html.index("decide_refund")
    assert "&lt;b&gt;customer asked twice&lt;/b&gt;" in html
    assert f'href="/runs/{trace_id}/"' in html


def test_decision_page_links_an_existing_prompt_version(reviewer_client, agent, queue, admin_user):
    from agents.prompts.versions import create_prompt

    create_prompt(name="refunder", actor=admin_user, template="Refund {{ order }}", variables=["order"])
    req = make_pending(agent, queue, prompt_name="refunder", prompt_version="1")
    html = reviewer_client.get(f"/approvals/{req.pk}/").content.decode()
    assert 'href="/prompts/refunder/"' in html and 'href="/prompts/refunder/v1/"' in html


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_through_the_page_give_one_winner_and_409s_naming_it():
    import threading

    from django.db import connection

    agent = factories.make_agent("race-bot")
    reviewers = [factories.make_user(Role.REVIEWER, username=f"r{i}") for i in range(8)]
    queue = make_queue("race", *reviewers)
    req = make_pending(agent, queue)
    clients = [login(user) for user in reviewers]
    barrier = threading.Barrier(len(clients))
    statuses, bodies = [], []

    def decide(client):
        try:
            barrier.wait()
            response = client.post(f"/approvals/{req.pk}/decide/", {"verdict": "approve"}, **HTMX)
            statuses.append(response.status_code)
            bodies.append(response.content.decode())
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    req.refresh_from_db()
    assert sorted(statuses) == [200] + [409] * (len(clients) - 1)
    assert req.decisions.count() == 1
    winner = req.decider
    assert all(f"Already approved by {winner}" in body for body, status in zip(bodies, statuses) if status == 409)


def test_overview_counts_late_decisions_and_overdue_requests_as_breaches(operator_client, reviewer, agent, queue):
    from datetime import timedelta

    from django.utils import timezone

    past = timezone.now() - timedelta(minutes=40)  # high risk: due 30 min after, so 10 min ago
    late = services.create_request(agent=agent, new=services.NewRequest(action="billing.late", risk="high",
                                                                        arguments={}), now=past)[0]
    services.create_request(agent=agent, new=services.NewRequest(action="billing.waiting", risk="high",
                                                                 arguments={}), now=past)
    on_time = make_pending(agent, queue, action="quick")
    services.decide_request(request_id=late.pk, reviewer=reviewer, verdict="approve")
    services.decide_request(request_id=on_time.pk, reviewer=reviewer, verdict="reject", reason_category="risk")
    row = next(r for r in operator_client.get("/approvals/overview/").context["queues"] if r["queue"] == queue)
    assert row["today"] == {"total": 2, "in_time": 1, "percent": 50}
    assert row["breaches_week"] == 2  # the late decision and the one still waiting
    assert row["overdue"] == 1 and row["pending"] == 1
    assert row["p95"] > 30 * 60  # percentile_cont interpolates on PostgreSQL; nearest rank elsewhere


def test_overview_refreshes_its_body_only_for_htmx(operator_client, req):
    html = operator_client.get("/approvals/overview/", **HTMX).content.decode()
    assert html.strip().startswith('<div id="overview-body"') and "<html" not in html
    assert 'data-testid="pending">1<' in html

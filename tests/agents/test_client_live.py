"""The client against the real console served by uvicorn (``asgi_server``), never a mock.

The reviewer's side is played through ``approvals.services`` (what the
reviewer UI calls); everything the agent does goes over HTTP through the client.
"""

import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.client import (
    AgentPaused,
    ApprovalExpired,
    ApprovalRejected,
    BadRequest,
    Conflict,
    Console,
    Unauthorized,
)
from approvals import services as approval_services
from approvals.models import ApprovalRequest
from console.roles import Role
from tests import factories


@pytest.fixture
def live_agent(asgi_server):
    agent = factories.make_agent("support-bot")
    _key, plain = factories.make_key(agent)
    console = Console(asgi_server.url, plain, max_retries=2, backoff_s=0.05)
    console.agent = agent
    yield console
    console.close()


@pytest.fixture
def boss(transactional_db):
    return factories.make_user(Role.ADMIN, username="boss")


def decide(decision, boss, verdict, reason="", arguments=None):
    approval_services.decide_request(request_id=decision.id, reviewer=boss, verdict=verdict, reason=reason,
                                     reason_category="", arguments=arguments)


# --- keys --------------------------------------------------------------------------------------


def test_whoami_names_the_keys_agent(live_agent):
    me = live_agent.whoami()
    assert me["agent"] == "support-bot" and me["paused"] is False
    assert live_agent.key.startswith(me["key_prefix"])


def test_an_unknown_key_is_refused(asgi_server):
    with Console(asgi_server.url, "aoc_not-a-real-key", max_retries=0) as console:
        with pytest.raises(Unauthorized):
            console.whoami()


def test_a_revoked_key_is_refused_at_once(live_agent):
    key = live_agent.agent.keys.get()
    agent_services.revoke_key(key_id=key.pk, actor="system:test")
    with pytest.raises(Unauthorized):
        live_agent.request_approval("refund", {"amount": 1}, "low")


def test_a_bad_request_names_the_field(live_agent):
    with pytest.raises(BadRequest) as exc:
        live_agent.request_approval("refund", {"amount": 1}, "extreme")
    assert "risk" in exc.value.fields


# --- decisions ---------------------------------------------------------------------------------


def test_an_unmatched_low_risk_action_is_approved_at_once(live_agent):
    decision = live_agent.request_approval("notes.add", {"text": "hi"}, "low", summary="add a note")
    assert decision.approved and decision.decided_by == "policy:default-allow"
    assert decision.arguments == {"text": "hi"} and not decision.edited


def test_approve_while_the_agent_waits(live_agent, boss):
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(live_agent.request_approval(
        "refund", {"order": "NW-1", "amount": 700}, "high", summary="Refund 700", resource="crm:customer:42",
        wait_timeout=120)))
    waiter.start()
    for _ in range(400):  # until the request exists; then decide it like a reviewer would
        req = ApprovalRequest.objects.filter(agent=live_agent.agent).first()
        if req:
            break
        time.sleep(0.05)
    approval_services.decide_request(request_id=req.pk, reviewer=boss, verdict="approve", reason="fine")
    waiter.join(timeout=150)
    decision = answers[0]
    assert decision.approved and decision.id == req.pk
    assert decision.arguments == {"order": "NW-1", "amount": 700} and not decision.edited
    assert decision.decided_by == "boss" and decision.digest
    assert decision.url.endswith(f"/{req.pk}/") or str(req.pk) in decision.url


def test_reject_raises_with_the_reviewers_reason(live_agent, boss):
    pending = live_agent.request_approval("refund", {"amount": 900}, "high", wait=False)
    assert pending.pending and pending.due_at and pending.queue
    decide(pending, boss, "reject", reason="order already refunded")
    decision = live_agent.wait_for_decision(pending.id, timeout=30)
    with pytest.raises(ApprovalRejected, match="order already refunded") as exc:
        decision.raise_for_status()
    assert exc.value.decision.decided_by == "boss"


def test_modify_returns_the_edited_arguments_and_binds_the_execution_to_them(live_agent, boss):
    pending = live_agent.request_approval("refund", {"order": "NW-2", "amount": 900}, "high", wait=False)
    decide(pending, boss, "modify", reason="cap at the amount paid", arguments={"order": "NW-2", "amount": 640})
    decision = live_agent.wait_for_decision(pending.id, timeout=30, requested={"order": "NW-2", "amount": 900})
    assert decision.approved and decision.edited
    assert decision.arguments == {"order": "NW-2", "amount": 640}
    assert decision.requested_arguments == {"order": "NW-2", "amount": 900}
    with pytest.raises(Conflict):  # the digest of the requested arguments is not the approved one
        live_agent.report_execution(decision.id, result={"ok": True}, digest=pending.digest)
    live_agent.report_execution(decision.id, result={"refunded": 640}, digest=decision.digest)
    with pytest.raises(Conflict):  # once only
        live_agent.report_execution(decision.id, result={"refunded": 640}, digest=decision.digest)
    row = ApprovalRequest.objects.get(pk=decision.id)
    assert row.executed_at is not None and row.execution_result == {"refunded": 640}


def test_a_paused_agent_is_told_at_once(live_agent):
    agent_services.pause_agent(agent_id=live_agent.agent.pk, actor="system:test", reason="loop detected")
    assert live_agent.whoami()["paused"] is True
    decision = live_agent.request_approval("refund", {"amount": 900}, "high", wait_timeout=30)
    assert decision.paused
    with pytest.raises(AgentPaused, match="loop detected"):
        decision.raise_for_status()


def test_an_undecided_request_expires_after_its_timeout(live_agent):
    pending = live_agent.request_approval("deploy", {"service": "api"}, "high", timeout_s=1, wait=False)
    approval_services.expire_overdue(now=timezone.now() + timedelta(seconds=5))
    decision = live_agent.wait_for_decision(pending.id, timeout=30)
    assert decision.status == "expired"
    with pytest.raises(ApprovalExpired):
        decision.raise_for_status()


# --- retries against the real console -----------------------------------------------------------


class LoseFirstAnswer(httpx.HTTPTransport):
    """Delivers each matching request to the console, then loses the first answer (a dropped connection)."""

    def __init__(self, path_suffix: str):
        super().__init__()
        self.path_suffix = path_suffix
        self.lost = 0

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith(self.path_suffix) and not self.lost:
            response.read()
            self.lost += 1
            raise httpx.ReadError("connection reset after the console answered", request=request)
        return response


def test_a_retry_after_a_lost_answer_gets_the_same_request_not_a_second_one(asgi_server, live_agent):
    transport = LoseFirstAnswer("/api/v1/approvals")
    with Console(asgi_server.url, live_agent.key, transport=transport, backoff_s=0.01) as console:
        decision = console.request_approval("refund", {"amount": 800}, "high", wait=False)
    assert transport.lost == 1
    assert list(ApprovalRequest.objects.filter(agent=live_agent.agent).values_list("pk", flat=True)) == [decision.id]


def test_a_retried_execution_report_whose_first_try_landed_counts_as_done(asgi_server, live_agent):
    decision = live_agent.request_approval("notes.add", {"text": "x"}, "low")
    transport = LoseFirstAnswer("/execution")
    with Console(asgi_server.url, live_agent.key, transport=transport, backoff_s=0.01) as console:
        answer = console.report_execution(decision.id, result={"ok": 1}, digest=decision.digest)
    assert transport.lost == 1 and answer["executed_at"]
    assert ApprovalRequest.objects.get(pk=decision.id).execution_result == {"ok": 1}


# --- the guard ---------------------------------------------------------------------------------


def test_guard_runs_the_approved_call_once_and_reports_it(live_agent):
    calls = []

    @live_agent.guarded("notes.add", risk="low", summary=lambda a: f"note: {a['text']}")
    def add_note(text):
        calls.append(text)
        return {"id": 1}

    assert add_note("hello") == {"id": 1}
    assert calls == ["hello"]
    row = ApprovalRequest.objects.get(agent=live_agent.agent)
    assert row.summary == "note: hello" and row.execution_result == {"id": 1}


def test_guard_does_not_run_for_a_paused_agent(live_agent):
    agent_services.pause_agent(agent_id=live_agent.agent.pk, actor="system:test", reason="budget")
    calls = []
    with pytest.raises(AgentPaused):
        with live_agent.guarded("notes.add", risk="low", arguments={"text": "x"}):
            calls.append(1)
    assert calls == []
    assert ApprovalRequest.objects.get(agent=live_agent.agent).executed_at is None


# --- the README example ------------------------------------------------------------------------


def test_the_readme_example_runs_as_written_and_gets_the_reviewers_edit(asgi_server, boss):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from traces.models import Run

    agent = factories.make_agent("billing-bot")
    _key, plain = factories.make_key(agent)
    env = {**os.environ, "CONSOLE_URL": asgi_server.url, "CONSOLE_KEY": plain}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the client needs no Django
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "agents.client.example"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(1200):
            req = ApprovalRequest.objects.filter(agent=agent, action="refund").first()
            if req or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert req is not None, proc.communicate()[0]
        approval_services.decide_request(request_id=req.pk, reviewer=boss, verdict="modify", reason="cap",
                                         arguments={**req.arguments, "amount": 650})
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "refunded 650 EUR (edited by the reviewer)" in out
    assert "note: {'ticket': 'T-100017', 'saved': 34}" in out
    req.refresh_from_db()
    assert req.execution_result == {"refund_id": "RF-1", "amount": 650}
    run = Run.objects.get(agent=agent)
    assert run.task == "Refund a damaged espresso machine" and req.trace_id == run.trace_id


def test_a_bad_idempotency_key_is_refused_naming_the_header(live_agent):
    with pytest.raises(BadRequest) as exc:
        live_agent.request_approval("notes.add", {}, "low", idempotency_key="k" * 300)
    assert "Idempotency-Key" in exc.value.fields


# --- prompts -----------------------------------------------------------------------------------


def test_get_prompt_caches_with_the_etag_and_follows_a_label_move(live_agent):
    prompt = agent_services.create_prompt(name="support-reply", actor="system:test", template="Be kind. {ticket}")
    v1 = prompt.versions.get(number=1)
    agent_services.move_label(prompt=prompt, label="production", version=v1, actor="system:test")
    first = live_agent.get_prompt("support-reply")
    again = live_agent.get_prompt("support-reply")
    assert (first.version, first.template, first.source) == ("1", "Be kind. {ticket}", "console")
    assert again is first  # 304 Not Modified: the cached version is reused
    v2 = agent_services.create_version(prompt=prompt, author="system:test", template="Be brief. {ticket}", parent=v1)
    agent_services.move_label(prompt=prompt, label="production", version=v2, actor="system:test")
    moved = live_agent.get_prompt("support-reply")
    assert (moved.version, moved.template) == ("2", "Be brief. {ticket}")


def test_an_unknown_prompt_falls_back_to_the_default(live_agent):
    prompt = live_agent.get_prompt("no-such-prompt", default="Built in. {ticket}")
    assert (prompt.source, prompt.version, prompt.template) == ("default", None, "Built in. {ticket}")

"""The demo fleet: a smoke run against the real console, talking only over HTTP."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents.fleet import AGENT_TYPES, Fleet
from approvals.models import ApprovalRequest
from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_and_the_client_import_without_django():
    code = ("import sys, agents.fleet, agents.client; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('django', 'approvals', 'traces', 'console')]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_unknown_agent_names_are_refused():
    with pytest.raises(ValueError, match="billing-bot"):
        Fleet("http://127.0.0.1:9", {"billing-bot": "aoc_x"})


def keys_for(names):
    keys = {}
    for name in names:
        _key, keys[name] = factories.make_key(factories.make_agent(name))
    return keys


def run_until(fleet, done, limit_s=90):
    """Run the fleet until ``done()`` holds (or the limit passes), then stop it and flush its spans."""
    fleet.start()
    try:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not done():
            time.sleep(0.5)
    finally:
        fleet.stop()


def test_a_fleet_smoke_run_produces_runs_spans_and_approval_requests(asgi_server):
    from traces.models import Run, Span

    keys = keys_for(AGENT_TYPES)
    fleet = Fleet(asgi_server.url, keys, rate=8, seed=7)

    def done():
        agents_with_runs = Run.objects.values("agent__name").distinct().count()
        return agents_with_runs == len(keys) and ApprovalRequest.objects.exists()

    run_until(fleet, done)
    assert set(Run.objects.values_list("agent__name", flat=True)) == set(keys)
    assert ApprovalRequest.objects.exists()
    kinds = set(Span.objects.values_list("kind", flat=True))
    assert {"agent", "llm", "tool"} <= kinds
    llm = list(Span.objects.filter(kind="llm"))
    assert all(s.input_tokens > 0 and s.output_tokens > 0 and s.model for s in llm)
    assert max(len(s.input_text) for s in llm) > 1000  # plausible prompts, not placeholders
    assert sum(s["errors"] for s in fleet.stats().values()) == 0, fleet.stats()


def test_refunds_above_500_ask_approval_with_risk_high_on_the_customer(asgi_server):
    keys = keys_for(["support-bot"])
    fleet = Fleet(asgi_server.url, keys, rate=10, seed=3, mischief=False)
    run_until(fleet, lambda: ApprovalRequest.objects.filter(action="refund").exists())
    refund = ApprovalRequest.objects.filter(action="refund").first()
    assert refund.risk == "high" and refund.arguments["amount"] > 500
    assert refund.resource.startswith("crm:customer:") and refund.trace_id


def test_a_fleet_survives_a_console_that_is_down():
    fleet = Fleet("http://127.0.0.1:9", {"researcher": "aoc_x"}, rate=20, seed=1, export_timeout_s=1)
    for agent in fleet.agents:
        agent.console.max_retries = 0
    fleet.start()
    deadline = time.monotonic() + 60
    while fleet.stats()["researcher"]["runs"] < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fleet.stats()["researcher"]["runs"] >= 3  # it kept working (prompt falls back, spans are dropped)
    assert all(t.is_alive() for t in fleet._threads)
    fleet.stop(timeout=30)
    assert not any(t.is_alive() for t in fleet._threads)


def test_simulate_command_runs_the_fleet_against_a_console(asgi_server):
    from traces.models import Run

    keys = keys_for(["deploy-bot"])
    call_command("simulate", url=asgi_server.url, key=[f"deploy-bot={keys['deploy-bot']}"], rate=20,
                 duration=4, seed=2)
    assert Run.objects.filter(agent__name="deploy-bot").exists()


def test_simulate_command_refuses_a_malformed_key():
    with pytest.raises(CommandError, match="AGENT=KEY"):
        call_command("simulate", url="http://127.0.0.1:9", key=["support-bot"], duration=1)


def test_an_agent_keeps_working_while_its_approvals_wait_for_a_human(asgi_server):
    from agents.fleet.fleet import MAX_WAITING
    from traces.models import Run

    keys = keys_for(["support-bot"])
    fleet = Fleet(asgi_server.url, keys, rate=10, seed=5, mischief=False)
    pending = ApprovalRequest.objects.filter(status="pending")
    run_until(fleet, lambda: pending.count() >= MAX_WAITING and Run.objects.count() >= MAX_WAITING + 3)
    assert pending.count() == MAX_WAITING  # nobody decides: the cap holds...
    assert Run.objects.count() >= MAX_WAITING + 3  # ...and new tickets are still answered


# --- misbehaviour on purpose ---------------------------------------------------------------------


def forced(*kinds):
    import random

    from agents.fleet.sim import Mischief

    return Mischief(random.Random(1), rate=10, enabled=False, always=kinds)


def test_a_looping_support_bot_repeats_the_same_tool_call_and_opens_a_loop_incident(asgi_server, settings):
    from django.db.models import Count

    from traces.incident_models import Incident
    from traces.models import Span

    settings.WATCHERS_MODE = "inline"
    fleet = Fleet(asgi_server.url, keys_for(["support-bot"]), rate=10, seed=1, mischief=forced("loop"))
    looped = (Span.objects.filter(tool_name="lookup_order").values("run", "tool_arguments")
              .annotate(n=Count("id")).filter(n__gte=8))
    incidents = Incident.objects.filter(kind="loop", agent__name="support-bot")
    run_until(fleet, lambda: looped.exists() and incidents.exists())
    assert looped.exists()
    assert incidents.exists()


def test_support_bot_and_data_ops_on_the_same_customer_open_a_conflict_incident(asgi_server, settings):
    from traces.incident_models import Incident

    settings.WATCHERS_MODE = "inline"
    fleet = Fleet(asgi_server.url, keys_for(["support-bot", "data-ops"]), rate=10, seed=1,
                  mischief=forced("shared_resource"))
    on_42 = ApprovalRequest.objects.filter(resource="crm:customer:42")
    conflicts = Incident.objects.filter(kind="conflict")
    run_until(fleet, lambda: on_42.values("agent").distinct().count() == 2 and conflicts.exists())
    assert set(on_42.values_list("agent__name", flat=True)) == {"support-bot", "data-ops"}
    assert set(on_42.values_list("action", flat=True)) == {"refund", "run_migration"}
    assert conflicts.first().evidence["resource"] == "crm:customer:42"


def test_a_researcher_cost_spike_sends_huge_token_counts(asgi_server):
    from traces.models import Span

    fleet = Fleet(asgi_server.url, keys_for(["researcher"]), rate=10, seed=1, mischief=forced("cost_spike"))
    spikes = Span.objects.filter(kind="llm", input_tokens__gte=180_000)
    run_until(fleet, spikes.exists)
    assert spikes.filter(model="claude-opus-4").exists()


def test_the_disliked_prompt_version_asks_for_more_than_was_paid(asgi_server):
    from approvals import services as approval_services
    from console.roles import Role

    boss = factories.make_user(Role.ADMIN, username="boss")
    fleet = Fleet(asgi_server.url, keys_for(["support-bot"]), rate=10, seed=2, mischief=False)
    v2 = ApprovalRequest.objects.filter(action="refund", prompt_name="support-reply", prompt_version="2")

    def reviewer_rejects_then_checks():
        for req in ApprovalRequest.objects.filter(status="pending"):  # keep the agent's waiting slots free
            try:
                approval_services.decide_request(request_id=req.pk, reviewer=boss, verdict="reject",
                                                 reason="too generous")
            except approval_services.AlreadyDecided:
                pass
        return v2.exists()

    run_until(fleet, reviewer_rejects_then_checks)
    req = v2.first()
    assert req.arguments["amount"] > req.context["paid_eur"] and req.summary == f"Refund {req.arguments['amount']} EUR"


def _serve_again_on(port: int):
    import threading

    import uvicorn

    from console.asgi import application
    from tests.agents.conftest import AsgiServer

    server = AsgiServer.__new__(AsgiServer)
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off",
                                                  log_level="warning", ws="websockets"))
    server.thread = threading.Thread(target=server.server.run, name="asgi-test-server-2", daemon=True)
    server.start()
    return server


def wait_for(condition, limit_s=60):
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def test_the_fleet_carries_on_when_the_console_restarts(asgi_server):
    from traces.models import Run

    fleet = Fleet(asgi_server.url, keys_for(["researcher"]), rate=10, seed=1, export_timeout_s=2)
    fleet.start()
    second = None
    try:
        assert wait_for(lambda: Run.objects.exists())
        asgi_server.stop()
        runs_when_down = fleet.stats()["researcher"]["runs"]
        assert wait_for(lambda: fleet.stats()["researcher"]["runs"] >= runs_when_down + 2)
        second = _serve_again_on(asgi_server.port)
        landed = Run.objects.count()
        assert wait_for(lambda: Run.objects.count() > landed)
    finally:
        fleet.stop()
        if second:
            second.stop()

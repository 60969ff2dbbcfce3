"""Each detector against synthetic streams that should fire, and normal variation that should not."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests import factories
from tests.traces import helpers
from tests.traces.test_watchers_support import make_history, send_committed, step, tool, watching  # noqa: F401
from traces.incident_models import DetectorConfig, DetectorKind, Incident
from traces.models import ModelPrice, Run
from traces.watchers import baselines, detectors, jobs

pytestmark = pytest.mark.django_db

PARENT = b"\x01" * 8  # spans under a root that has not arrived: the run is unfinished


def configure(kind, agent=None, *, params=None, actions=None, enabled=True):
    DetectorConfig.objects.create(kind=kind, agent=agent, params=params or {}, actions=actions, enabled=enabled)
    detectors.invalidate_cache()


# --- pure checks ----------------------------------------------------------------------------------


def test_arguments_are_compared_modulo_key_order_case_and_whitespace():
    a = detectors.step_signature("lookup", {"order": 42, "note": "Hello  World"})
    b = detectors.step_signature("lookup", {"note": "hello world ", "order": 42.0})
    assert a == b
    assert a != detectors.step_signature("lookup", {"order": 43, "note": "hello world"})
    ignore = frozenset({"request_id"})
    assert (detectors.step_signature("lookup", {"order": 1, "request_id": "x"}, ignore)
            == detectors.step_signature("lookup", {"order": 1, "request_id": "y"}, ignore))


def test_find_loop_same_step_repeated():
    steps = [("lookup(1)", f"s{i}") for i in range(5)]
    assert detectors.find_loop(steps, repeats=5, max_cycle=4)["repeats"] == 5
    assert detectors.find_loop(steps[:4], repeats=5, max_cycle=4) is None


def test_find_loop_cycle_of_steps():
    steps = [(sig, f"s{i}") for i, sig in enumerate(["search(x)", "read(a)"] * 4)]
    loop = detectors.find_loop(steps, repeats=4, max_cycle=4)
    assert loop["pattern"] == ["search(x)", "read(a)"] and len(loop["span_ids"]) == 8
    assert detectors.find_loop(steps[:-2], repeats=4, max_cycle=4) is None


def test_varied_work_is_not_a_loop():
    steps = [(f"lookup({i % 9})", f"s{i}") for i in range(40)]  # nine different orders, some visited 4-5 times
    assert detectors.find_loop(steps, repeats=6, max_cycle=4) is None


def test_robust_latency_and_error_rate_checks():
    assert detectors.latency_regressed([1050.0] * 12, base_median=1000, base_mad=60, z=4, min_ratio=1.5,
                                       min_runs=10) is None
    assert detectors.latency_regressed([3000.0] * 12, base_median=1000, base_mad=60, z=4, min_ratio=1.5,
                                       min_runs=10)["robust_z"] > 4
    assert detectors.latency_regressed([3000.0] * 5, base_median=1000, base_mad=60, z=4, min_ratio=1.5,
                                       min_runs=10) is None  # too few runs to judge
    assert detectors.error_rate_regressed(1, 12, base_rate=0.05, margin=0.15, sigmas=3, min_runs=10) is None
    assert detectors.error_rate_regressed(8, 12, base_rate=0.05, margin=0.15, sigmas=3, min_runs=10)


def test_score_crossings_only_for_numbers():
    checks = [{"attribute": "hallucination_score", "op": ">", "threshold": 0.7}]
    assert detectors.score_crossings({"hallucination_score": 0.9}, checks)[0]["value"] == 0.9
    assert detectors.score_crossings({"hallucination_score": 0.2}, checks) == []
    assert detectors.score_crossings({"hallucination_score": "n/a"}, checks) == []
    assert detectors.score_crossings({}, checks) == []


def test_per_agent_settings_override_global_and_defaults(agent):
    configure(DetectorKind.LOOP, params={"repeats": 7})
    configure(DetectorKind.LOOP, agent, params={"max_cycle": 2}, actions=["notify"])
    mine = detectors.settings_for(DetectorKind.LOOP, agent.pk)
    other = detectors.settings_for(DetectorKind.LOOP, agent.pk + 1000)
    assert mine.params["repeats"] == 7 and mine.params["max_cycle"] == 2 and mine.actions == ["notify"]
    assert other.params["max_cycle"] == 4 and other.actions == ["notify", "pause"]


# --- loops on the stream -----------------------------------------------------------------------


def test_looping_run_opens_an_incident_with_the_spans(client, agent, agent_key, watching,
                                                      django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "lookup_order", {"order": 42}, parent=PARENT) for _ in range(5)]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans[:3])
    assert not Incident.objects.exists()
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans[3:])
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.LOOP and incident.agent == agent
    assert incident.trace_id == trace.hex() and incident.run == Run.objects.get(trace_id=trace.hex())
    assert len(incident.evidence["span_ids"]) == 5 and incident.evidence["observed"] == 5
    assert set(incident.actions.values_list("kind", flat=True)) == {"notify", "pause"}
    # More of the same loop: still one incident for the run.
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   tool(trace, "lookup_order", {"order": 42}, parent=PARENT))
    assert Incident.objects.count() == 1


def test_busy_but_varied_run_does_not_fire(client, agent_key, watching, django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "lookup_order", {"order": i}, parent=PARENT) for i in range(30)]
    spans += [tool(trace, "search", {"q": "refund policy"}, parent=PARENT) for _ in range(3)]  # a few repeats
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)
    assert not Incident.objects.exists()


def test_cycle_of_two_tools_fires(client, agent_key, watching, django_capture_on_commit_callbacks):
    configure(DetectorKind.LOOP, params={"repeats": 3}, actions=[])
    trace = helpers.new_trace_id()
    t0 = helpers.NOW_NS - 10**10
    spans = []
    for i in range(3):
        spans.append(tool(trace, "search", {"q": "x"} if i == 0 else {"q": f"x{i}"}, parent=PARENT,
                          start_ns=t0 + (2 * i) * 10**6))
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)
    assert not Incident.objects.exists()
    cycle = []
    for i in range(3):
        cycle.append(tool(trace, "get_page", {"n": 1}, parent=PARENT, start_ns=t0 + (10 + 2 * i) * 10**6))
        cycle.append(tool(trace, "get_next", {"n": 1}, parent=PARENT, start_ns=t0 + (11 + 2 * i) * 10**6))
    # A single-step repeat threshold of 3 would also see get_page three times; the pattern shows the cycle.
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *cycle)
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.LOOP and incident.evidence["repeats"] == 3


# --- cost -----------------------------------------------------------------------------------------


def _llm(trace, input_tokens, output_tokens):
    return helpers.make_span(trace, name="chat gpt-4o", parent=PARENT, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens})


def test_run_cost_spike_against_the_agents_own_baseline(client, agent, agent_key, watching,
                                                        django_capture_on_commit_callbacks):
    ModelPrice.objects.update_or_create(model="gpt-4o", defaults={"input_per_million": Decimal("2.5"), "output_per_million": Decimal("10")})
    make_history(agent, runs=40, cost=Decimal("0.006"), spread=0.2)
    baselines.refresh_agent(agent_id=agent.pk, now=timezone.now())
    normal = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks, _llm(normal, 1400, 350))  # 0.007
    assert not Incident.objects.exists()
    spike = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks, _llm(spike, 100_000, 25_000))  # 0.5
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.RUN_COST and incident.trace_id == spike.hex()
    assert incident.evidence["observed"] == pytest.approx(0.5)
    assert incident.evidence["baseline_p99"] == pytest.approx(0.0072, rel=0.05)
    assert incident.title.startswith("Run cost $0.5000 above $0.0")  # money, as the runs list shows it


def test_no_cost_alarm_without_enough_history(client, agent, agent_key, watching, django_capture_on_commit_callbacks):
    ModelPrice.objects.update_or_create(model="gpt-4o", defaults={"input_per_million": Decimal("2.5"), "output_per_million": Decimal("10")})
    make_history(agent, runs=5, cost=Decimal("0.006"))
    baselines.refresh_agent(agent_id=agent.pk, now=timezone.now())
    send_committed(client, agent_key, django_capture_on_commit_callbacks, _llm(helpers.new_trace_id(), 100_000, 25_000))
    assert not Incident.objects.exists()


def test_budget_over_a_window_fires_once(agent, watching):
    configure(DetectorKind.BUDGET, agent, params={"budget": 1.0, "window_s": 3600}, actions=[])
    now = timezone.now().replace(minute=30)
    for i, cost in enumerate(["0.4", "0.5"]):
        Run.objects.create(trace_id=f"{i:032x}", agent=agent, started_at=now - timedelta(minutes=5), cost=Decimal(cost))
    assert jobs.check_windows(now=now) == 0
    Run.objects.create(trace_id=f"{9:032x}", agent=agent, started_at=now - timedelta(minutes=1), cost=Decimal("0.3"))
    assert jobs.check_windows(now=now) == 1
    assert jobs.check_windows(now=now + timedelta(minutes=1)) == 0  # same window: the same anomaly
    assert Incident.objects.get().title.startswith("Spend $1.20 over budget $1.00 since ")
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.BUDGET and incident.evidence["observed"] == pytest.approx(1.2)


# --- latency and error rate -----------------------------------------------------------------------


def _window(agent, now, n, *, duration_ms=1000, errors=0, prefix="f"):
    for i in range(n):
        started = now - timedelta(minutes=2, seconds=i)
        Run.objects.create(trace_id=f"{prefix}{agent.pk:03x}{i:028x}", agent=agent, root_ended=True, status="ok",
                           started_at=started, ended_at=started + timedelta(milliseconds=duration_ms),
                           duration_ms=duration_ms, error_count=1 if i < errors else 0)


def test_latency_regression_fires_and_normal_variation_does_not(agent, watching):
    now = timezone.now()
    make_history(agent, runs=40, duration_ms=1000, spread=0.3, now=now)
    baselines.refresh_agent(agent_id=agent.pk, now=now)
    _window(agent, now, 12, duration_ms=1250, prefix="a")  # within normal variation
    assert jobs.check_latency(agent_id=agent.pk, now=now) is None
    Run.objects.filter(trace_id__startswith="a").delete()
    _window(agent, now, 12, duration_ms=3000, prefix="b")
    finding = jobs.check_latency(agent_id=agent.pk, now=now)
    assert finding and finding.evidence["observed_median_ms"] == 3000
    assert jobs.check_windows(now=now) == 1
    assert Incident.objects.get().kind == DetectorKind.LATENCY


def test_error_rate_regression_fires_and_a_stray_error_does_not(agent, watching):
    now = timezone.now()
    make_history(agent, runs=40, errors=2, now=now)
    baselines.refresh_agent(agent_id=agent.pk, now=now)
    _window(agent, now, 12, errors=1, prefix="a")
    assert jobs.check_error_rate(agent_id=agent.pk, now=now) is None
    Run.objects.filter(trace_id__startswith="a").delete()
    _window(agent, now, 12, errors=8, prefix="b")
    finding = jobs.check_error_rate(agent_id=agent.pk, now=now)
    assert finding and finding.evidence["errors"] == 8 and finding.evidence["baseline_rate"] == 0.05


# --- scores ---------------------------------------------------------------------------------------


def test_named_score_attribute_crossing_its_threshold(client, agent_key, watching, django_capture_on_commit_callbacks):
    configure(DetectorKind.SCORE, params={"checks": [{"attribute": "eval.hallucination", "op": ">", "threshold": 0.7}]},
              actions=[])
    trace = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   step(trace, "grade", attrs={"eval.hallucination": 0.2}, parent=PARENT))
    assert not Incident.objects.exists()
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   step(trace, "grade", attrs={"eval.hallucination": 0.93}, parent=PARENT))
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.SCORE and incident.evidence["value"] == pytest.approx(0.93)


def test_scores_are_ignored_until_an_admin_names_one(client, agent_key, watching, django_capture_on_commit_callbacks):
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   step(helpers.new_trace_id(), "grade", attrs={"eval.hallucination": 0.99}, parent=PARENT))
    assert not Incident.objects.exists()


# --- runaway runs ---------------------------------------------------------------------------------


def test_runaway_by_span_count_only_while_unfinished(client, agent_key, watching, django_capture_on_commit_callbacks):
    configure(DetectorKind.RUNAWAY, params={"max_spans": 20}, actions=[])
    finished = helpers.new_trace_id()
    root = helpers.new_span_id()
    spans = [step(finished, f"s{i}", parent=root) for i in range(24)] + [helpers.make_span(finished, root, name="root")]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)
    assert not Incident.objects.exists()
    running = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   *[step(running, f"s{i}", parent=PARENT) for i in range(21)])
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.RUNAWAY and incident.trace_id == running.hex()


def test_runaway_by_time_from_the_periodic_job(agent, watching):
    now = timezone.now()
    Run.objects.create(trace_id="1" * 32, agent=agent, status="running", started_at=now - timedelta(hours=2))
    Run.objects.create(trace_id="2" * 32, agent=agent, status="running", started_at=now - timedelta(minutes=5))
    Run.objects.create(trace_id="3" * 32, agent=agent, status="ok", root_ended=True,
                       started_at=now - timedelta(hours=3))
    assert jobs.check_windows(now=now) == 1
    assert Incident.objects.get().trace_id == "1" * 32


def test_abandoned_run_does_not_pause_its_agent_but_an_active_runaway_does(agent, watching):
    """A run whose agent crashed or restarted (no span for long) is not runaway; one still sending spans is."""
    now = timezone.now()
    abandoned = Run.objects.create(trace_id="4" * 32, agent=agent, status="running",
                                   started_at=now - timedelta(hours=2))
    Run.objects.filter(pk=abandoned.pk).update(updated_at=now - timedelta(minutes=90))
    assert jobs.check_windows(now=now) == 0
    agent.refresh_from_db()
    assert not agent.is_paused and not Incident.objects.exists()

    Run.objects.create(trace_id="5" * 32, agent=agent, status="running", started_at=now - timedelta(hours=2))
    assert jobs.check_windows(now=now) == 1
    assert Incident.objects.get().trace_id == "5" * 32
    agent.refresh_from_db()
    assert agent.is_paused  # the default playbook still pauses a real runaway


# --- conflicts ------------------------------------------------------------------------------------


def test_two_agents_touching_one_resource_conflict(client, agent_key, watching, django_capture_on_commit_callbacks):
    other = factories.make_agent("crm-bot")
    _key, other_key = factories.make_key(other)
    mine = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   tool(mine, "update_customer", {"id": 42}, resource="crm:customer:42", parent=PARENT),
                   tool(mine, "update_customer", {"id": 7}, resource="crm:customer:7", parent=PARENT))
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   tool(mine, "update_customer", {"id": 42, "x": 1}, resource="crm:customer:42", parent=PARENT))
    assert not Incident.objects.exists()  # one agent, its own resource
    theirs = helpers.new_trace_id()
    send_committed(client, other_key, django_capture_on_commit_callbacks,
                   tool(theirs, "close_customer", {"id": 42}, resource="crm:customer:42", parent=PARENT))
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.CONFLICT and incident.agent == other
    assert incident.evidence["resource"] == "crm:customer:42"


def test_conflicting_approval_requests_from_two_agents(agent, watching):
    from tests.approvals.helpers import make_queue, make_request, make_rule

    queue = make_queue("ops")
    make_rule(queue=queue, outcome="ask")
    other = factories.make_agent("crm-bot")
    make_request(agent=agent, resource="crm:customer:42")
    make_request(agent=agent, resource="crm:customer:9")
    assert jobs.check_approval_conflicts(now=timezone.now()) == []
    make_request(agent=other, resource="crm:customer:42")
    findings = jobs.check_approval_conflicts(now=timezone.now())
    assert [f.evidence["resource"] for f in findings] == ["crm:customer:42"]
    assert findings[0].agent_id == other.pk


def test_demo_seed_is_idempotent_and_keeps_admin_edits():
    import io

    from traces.watchers import demo

    demo.seed(io.StringIO())
    DetectorConfig.objects.filter(kind=DetectorKind.LOOP).update(params={"repeats": 9})
    demo.seed(io.StringIO())
    assert DetectorConfig.objects.filter(agent__isnull=True).count() == len(demo.GLOBAL)
    assert DetectorConfig.objects.get(kind=DetectorKind.LOOP).params == {"repeats": 9}


def test_off_mode_leaves_ingest_and_jobs_inert(client, agent_key, settings, django_capture_on_commit_callbacks):
    settings.WATCHERS_MODE = "off"  # the default under pytest: other apps' tests never meet a watcher
    detectors.invalidate_cache()
    trace = helpers.new_trace_id()
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   *[tool(trace, "lookup_order", {"order": 1}, parent=PARENT) for _ in range(8)])
    Run.objects.create(trace_id="1" * 32, agent=Run.objects.get().agent, status="running",
                       started_at=timezone.now() - timedelta(days=1))
    assert jobs.check_windows(now=timezone.now()) == 0 and jobs.sweep_streams(now=timezone.now()) == 0
    assert not Incident.objects.exists()
    settings.WATCHERS_MODE = "inline"
    assert jobs.sweep_streams(now=timezone.now()) == 1  # the catch-up sweep finds the loop ingest skipped
    assert jobs.check_windows(now=timezone.now()) == 1  # and the window job the day-old unfinished run
    assert set(Incident.objects.values_list("kind", flat=True)) == {DetectorKind.LOOP, DetectorKind.RUNAWAY}

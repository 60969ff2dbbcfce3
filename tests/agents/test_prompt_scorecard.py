"""The scorecard of a version against hand-computed values, and the plain-words comparison."""

from decimal import Decimal

import pytest
from django.utils import timezone

from agents.prompts import scorecard
from tests.agents.test_prompt_fixtures import add_decisions, add_version, make_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions():
    prompt = make_prompt()
    v2 = add_version(prompt, "Answer {ticket} and check the refund policy first.")
    return prompt.versions.get(number=1), v2


def test_rates_and_rejection_reasons(versions):
    v1, _ = versions
    add_decisions(v1, approve=6, modify=2, reject=1, category="policy")
    add_decisions(v1, reject=1, category="risk")
    card = scorecard.build_scorecard(v1)
    approval, edit = card.metrics["approval"], card.metrics["edit"]
    # approved as proposed or with edits: 8 of 10 -> Wilson 95% [0.4902, 0.9433]
    assert (approval.successes, approval.n) == (8, 10)
    assert approval.interval.low == pytest.approx(0.4902, abs=1e-4)
    assert approval.interval.high == pytest.approx(0.9433, abs=1e-4)
    # edits: 2 of 10 -> Wilson [0.0567, 0.5098]
    assert (edit.successes, edit.n) == (2, 10)
    assert edit.interval.low == pytest.approx(0.0567, abs=1e-4)
    assert edit.interval.high == pytest.approx(0.5098, abs=1e-4)
    assert dict(card.rejection_reasons) == {"policy": 1, "risk": 1}
    assert approval.shown == "80.0%"


traces_models = pytest.importorskip("traces.models")


def _runs(agent, version, rows):
    now = timezone.now()
    for i, (status, cost, ms) in enumerate(rows):
        traces_models.Run.objects.create(
            trace_id=f"{version.number:02x}{i:030x}", agent=agent, status=status, cost=Decimal(str(cost)),
            duration_ms=ms, started_at=now, prompt_name=version.prompt.name, prompt_version=str(version.number))


def test_task_success_cost_and_latency_per_finished_run(versions, agent):
    v1, _ = versions
    _runs(agent, v1, [("ok", 0.01, 1000), ("ok", 0.02, 2000), ("ok", 0.03, 3000), ("error", 0.04, 4000),
                      ("ok", 0.05, 5000), ("running", 9, 9)])
    card = scorecard.build_scorecard(v1)
    success = card.metrics["success"]
    assert (success.successes, success.n) == (4, 5)  # the running run is not finished
    cost = card.metrics["cost"]
    # mean .03, s²=.00025, se=.0070711, t(.975,4)=2.7764 -> ±.019632
    assert cost.interval.value == pytest.approx(0.03)
    assert cost.interval.low == pytest.approx(0.010368, abs=1e-6)
    latency = card.metrics["latency"]
    assert latency.interval.value == pytest.approx(3000)
    assert latency.interval.high == pytest.approx(4963.2, abs=0.1)


def test_comparison_says_which_differences_are_significant(versions, agent):
    v1, v2 = versions
    add_decisions(v1, approve=30, reject=20)
    add_decisions(v2, approve=40, reject=10)
    _runs(agent, v1, [("ok", 0.02, 1000), ("ok", 0.02, 1200), ("error", 0.03, 1100)])
    _runs(agent, v2, [("ok", 0.02, 1050), ("ok", 0.03, 1150), ("ok", 0.02, 1100)])
    rows = {c.key: c for c in scorecard.compare(scorecard.build_scorecard(v2), scorecard.build_scorecard(v1))}
    # 40/50 vs 30/50: z = 2.1822, p = 0.0291
    approval = rows["approval"]
    assert approval.significant and approval.p_value == pytest.approx(0.0291, abs=1e-4)
    assert "v2 is significantly higher" in approval.statement
    assert not rows["latency"].significant and "within noise" in rows["latency"].statement
    assert not rows["success"].significant


def test_no_data_is_stated_not_tested(versions):
    v1, v2 = versions
    rows = {c.key: c for c in scorecard.compare(scorecard.build_scorecard(v2), scorecard.build_scorecard(v1))}
    assert rows["approval"].p_value is None and "not enough data" in rows["approval"].statement

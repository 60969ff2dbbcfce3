"""The demo fleet misbehaves on its own, now and then (README: loops, cost spikes, two agents on one resource).

Mischief.due() compared each turn with a "last time" it made up afresh on every call and never kept,
always less than a period ago: without ``always=`` it never said yes, so the demo never looped,
never spiked and never opened the incidents the README promises.
"""

import random

import pytest

from agents.fleet import sim
from agents.fleet.sim import Mischief
from tests.fake_clock import FakeClock


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(sim.time, "monotonic", clock)
    return clock


@pytest.mark.parametrize("kind", ["loop", "cost_spike", "shared_resource"])
@pytest.mark.parametrize("seed", range(5))
def test_each_kind_of_misbehaviour_comes_within_its_first_period_and_then_at_most_once_a_period(clock, kind, seed):
    mischief = Mischief(random.Random(seed), rate=1.0)
    period = Mischief.PERIODS_S[kind]
    turns_at = []
    for _ in range(3 * period // 5):  # an agent's turn every 5 s, for three periods
        if mischief.due(kind, chance=0.5):
            turns_at.append(clock.now)
        clock.now += 5
    assert turns_at, f"no {kind} in {3 * period} s"
    assert turns_at[0] - 1000.0 <= period
    assert all(later - earlier >= period for earlier, later in zip(turns_at, turns_at[1:]))


def test_switched_off_mischief_never_comes(clock):
    mischief = Mischief(random.Random(1), rate=1.0, enabled=False)
    for _ in range(200):
        assert not mischief.due("loop", chance=1.0)
        clock.now += 5

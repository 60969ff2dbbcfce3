"""The per-key token bucket shared by trace ingest and the approvals API (console.ratelimit)."""

from console import ratelimit


class _Clock:
    def __init__(self):
        self.now = 500.0

    def monotonic(self) -> float:
        return self.now


def test_a_key_gets_a_second_of_burst_then_one_request_per_token_regained(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    limiter = ratelimit.TokenBucketLimiter()

    assert [limiter.allow(1, 3) for _ in range(4)] == [True, True, True, False]
    clock.now += 0.34  # a little over the third of a second a token takes to come back
    assert [limiter.allow(1, 3) for _ in range(2)] == [True, False]


def test_keys_have_buckets_of_their_own_and_reset_refills_them(monkeypatch):
    monkeypatch.setattr(ratelimit, "time", _Clock())
    limiter = ratelimit.TokenBucketLimiter()

    assert limiter.allow(1, 1) and not limiter.allow(1, 1)
    assert limiter.allow(2, 1)
    limiter.reset()
    assert limiter.allow(1, 1)

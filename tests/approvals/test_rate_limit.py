"""``POST /api/v1/approvals`` honours the key's ``rate_limit_per_s``: 429 with ``Retry-After``, nothing created."""

import pytest

from approvals import api
from approvals.models import ApprovalRequest
from console import ratelimit
from tests import factories

pytestmark = pytest.mark.django_db

BODY = {"action": "refunds.issue", "arguments": {"amount": 5}, "risk": "low", "summary": "refund"}


class _Clock:
    """A stopped monotonic clock for the token bucket: the test, not the machine's speed, decides time."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    api.rate_limiter.reset()
    yield clock
    api.rate_limiter.reset()


def _limited_key(agent, rate: int | None) -> str:
    key, plain = factories.make_key(agent)
    key.rate_limit_per_s = rate
    key.save(update_fields=["rate_limit_per_s"])
    return plain


def _ask(client, key: str):
    return client.post("/api/v1/approvals", BODY, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_key_over_its_limit_gets_429_with_retry_after_and_no_request_is_created(client, agent, clock):
    key = _limited_key(agent, 2)

    answers = [_ask(client, key) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2]["Retry-After"] == "1"
    assert answers[2].json()["detail"] == "This key is over its limit of 2 requests per second."
    assert ApprovalRequest.objects.filter(agent=agent).count() == 2


def test_after_retry_after_the_key_may_ask_again(client, agent, clock):
    key = _limited_key(agent, 1)
    assert _ask(client, key).status_code == 201
    assert _ask(client, key).status_code == 429

    clock.now += 1.0

    assert _ask(client, key).status_code == 201


def test_one_keys_limit_leaves_other_keys_and_unlimited_keys_alone(client, agent, clock):
    limited = _limited_key(agent, 1)
    other = _limited_key(factories.make_agent("other-bot"), 1)
    unlimited = _limited_key(factories.make_agent("free-bot"), None)
    assert _ask(client, limited).status_code == 201
    assert _ask(client, limited).status_code == 429

    assert _ask(client, other).status_code == 201
    assert [_ask(client, unlimited).status_code for _ in range(5)] == [201] * 5

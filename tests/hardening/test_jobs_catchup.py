"""Jobs after an outage, and webhooks that hang.

Already covered elsewhere (not repeated here): twenty reviewers deciding at once and concurrent
Idempotency-Key retries (tests/approvals/test_decide.py, PostgreSQL + threads), two escalation workers
(tests/approvals/test_escalation_job.py), webhook 500s retried with backoff and every attempt recorded
(tests/approvals/test_notify.py).
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from approvals import jobs
from approvals.models import Delivery, DeliveryAttempt, DeliveryStatus, EscalationFiring
from approvals.services import notify
from tests.approvals.helpers import make_request
from tests.approvals.test_escalation_job import M, fired, setup  # noqa: F401 - the matrix fixture
from tests.approvals.test_notify import Receiver, _request_with_webhook


@pytest.mark.django_db
def test_after_an_outage_the_job_fires_every_missed_step_exactly_once(setup, agent, fixed_now):  # noqa: F811
    """Beat/workers were down for an hour: the first sweep catches up every (request, level, repeat)."""
    t0 = fixed_now
    early = make_request(agent=agent, risk="high", now=t0)
    late = make_request(agent=agent, risk="high", now=t0 + 6 * M)
    assert EscalationFiring.objects.count() == 0
    # The engine fires one step per request per run (a cursor per request), so catching up takes as
    # many runs as steps were missed (seconds at a 2 s sweep): each run must make progress, none repeats.
    runs = []
    while (count := jobs.fire_due_escalations(now=t0 + 60 * M)) and len(runs) < 10:
        runs.append(count)
    assert runs == [2, 2, 2, 2]
    assert sorted(fired(early)) == [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 1, 2)]
    assert sorted(fired(late)) == [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 1, 2)]
    deliveries = Delivery.objects.count()
    assert jobs.fire_due_escalations(now=t0 + 60 * M) == 0
    assert jobs.fire_due_escalations(now=t0 + 120 * M) == 0
    assert Delivery.objects.count() == deliveries
    assert EscalationFiring.objects.count() == 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_catching_up_at_once_still_fire_each_step_once(setup, agent, fixed_now):  # noqa: F811
    t0 = fixed_now
    requests = [make_request(agent=agent, risk="high", now=t0 + i * M) for i in range(5)]
    barrier, results, errors = threading.Barrier(2), [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            for _ in range(20):  # both keep sweeping until nothing is due (see the test above)
                count = jobs.fire_due_escalations(now=t0 + 90 * M)
                results.append(count)
                if not count and len(results) > 8:
                    break
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(results) == 20
    for req in requests:
        assert sorted(fired(req)) == [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 1, 2)]


class HangingReceiver(Receiver):
    """Holds the first ``hangs`` posts longer than the console waits, then answers 200."""

    def __init__(self, hangs: int, hold_s: float):
        super().__init__(failures=0)
        self.hangs, self.hold_s, self.arrived = hangs, hold_s, 0
        lock = threading.Lock()
        handler = self.server.RequestHandlerClass
        receiver = self
        original = handler.do_POST

        def do_post(self):
            with lock:
                receiver.arrived += 1
                hang = receiver.arrived <= receiver.hangs
            if hang:
                time.sleep(receiver.hold_s)
            original(self)

        handler.do_POST = do_post


@pytest.mark.django_db
def test_a_hanging_webhook_times_out_is_retried_and_is_not_sent_again_after_success(
        agent, admin_user, fixed_now, settings, monkeypatch):
    monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT_S", 0.5)
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]  # the receiver is local
    with HangingReceiver(hangs=1, hold_s=2.0) as receiver:
        req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
        delivery = Delivery.objects.get(request=req, channel="webhook")
        assert jobs.deliver_pending_notifications(now=fixed_now) == 0          # timed out
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and "Timeout" in delivery.last_error
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=5)) == 0  # backoff
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=11)) == 1
        for minutes in (1, 10, 60):
            assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(minutes=minutes)) == 0
        time.sleep(2.5)  # let the hung handler finish recording, so the count below is complete
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("id").values_list("ok", "error"))
    assert [ok for ok, _ in attempts] == [False, True]
    assert "Timeout" in attempts[0][1]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 2
    # the receiver saw the timed-out post too (at-least-once; X-Console-Delivery lets it deduplicate)
    ids = {headers["X-Console-Delivery"] for headers, _body in receiver.received}
    assert ids == {str(delivery.pk)} and len(receiver.received) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_delivery_workers_send_a_webhook_once(agent, admin_user, fixed_now, settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]  # the receiver is local
    with HangingReceiver(hangs=100, hold_s=0.3) as receiver:  # slow but successful
        req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
        barrier, results = threading.Barrier(2), []

        def worker():
            try:
                barrier.wait(timeout=10)
                results.append(jobs.deliver_pending_notifications(now=fixed_now))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    webhook = Delivery.objects.get(request=req, channel="webhook")
    assert webhook.status == DeliveryStatus.SENT
    assert len(receiver.received) == 1
    assert DeliveryAttempt.objects.filter(delivery=webhook).count() == 1

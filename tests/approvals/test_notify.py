"""Deliveries: signed webhooks retried with backoff against a local receiver, e-mail, in-app."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from approvals import jobs
from approvals.models import Delivery, DeliveryAttempt, DeliveryStatus
from approvals.services import notify, update_matrix
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

SECRET = "test-signing-secret"


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings):
    """The receivers here listen on 127.0.0.1, an internal address webhooks reach only when listed."""
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]


class Receiver:
    """An HTTP server on 127.0.0.1 that fails the first ``failures`` posts with 500."""

    def __init__(self, failures: int = 0):
        self.failures, self.received = failures, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = 500 if len(receiver.received) <= receiver.failures else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _request_with_webhook(agent, admin_user, fixed_now, url, fmt="generic"):
    queue = make_queue("oncall")
    make_rule(action_pattern="*", queue=queue)
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "webhook_url": url, "webhook_format": fmt}])
    req = make_request(agent=agent, risk="high", now=fixed_now, summary="Refund <b>big</b> & fast")
    assert jobs.fire_due_escalations(now=fixed_now) == 1
    return req


@pytest.mark.django_db
def test_webhooks_are_signed_and_retried_with_backoff_recording_each_attempt(agent, admin_user, fixed_now, settings):
    settings.WEBHOOK_SIGNING_SECRET = SECRET
    with Receiver(failures=2) as receiver:
        req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
        delivery = Delivery.objects.get(request=req, channel="webhook")
        assert jobs.deliver_pending_notifications(now=fixed_now) == 0          # 500
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=5)) == 0  # not due yet
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=10)) == 0  # 500 again
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=25)) == 0  # backoff 20 s
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(seconds=30)) == 1  # 200
        assert jobs.deliver_pending_notifications(now=fixed_now + timedelta(hours=1)) == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 3)
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("ok", "status_code"))
    assert attempts == [(False, 500), (False, 500), (True, 200)]
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Console-Signature"] == expected
    payload = json.loads(body)
    assert payload["event"] == "approval.escalated"
    assert payload["request"]["id"] == req.pk
    assert payload["request"]["summary"] == "Refund <b>big</b> & fast"


@pytest.mark.django_db
def test_a_slack_webhook_gets_escaped_text(agent, admin_user, fixed_now, settings):
    settings.WEBHOOK_SIGNING_SECRET = SECRET
    with Receiver() as receiver:
        _request_with_webhook(agent, admin_user, fixed_now, receiver.url, fmt="slack")
        jobs.deliver_pending_notifications(now=fixed_now)
    body = json.loads(receiver.received[0][1])
    assert set(body) == {"text"}
    assert "wants refunds.issue" in body["text"] and "|open>" in body["text"]


@pytest.mark.django_db
def test_a_webhook_that_keeps_failing_is_marked_failed(agent, admin_user, fixed_now, settings):
    with Receiver(failures=100) as receiver:
        req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
        now = fixed_now
        for _ in range(notify.MAX_ATTEMPTS + 2):
            jobs.deliver_pending_notifications(now=now)
            now += timedelta(hours=2)
    delivery = Delivery.objects.get(request=req, channel="webhook")
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, notify.MAX_ATTEMPTS)
    assert len(receiver.received) == notify.MAX_ATTEMPTS
    assert "HTTP 500" in delivery.last_error


@pytest.mark.django_db
def test_an_unreachable_webhook_is_retried_not_raised(agent, admin_user, fixed_now):
    req = _request_with_webhook(agent, admin_user, fixed_now, "http://127.0.0.1:9/nothing-listens")
    assert jobs.deliver_pending_notifications(now=fixed_now) == 0
    delivery = Delivery.objects.get(request=req, channel="webhook")
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1 and delivery.last_error


@pytest.mark.django_db
def test_email_and_in_app_deliveries_are_sent(agent, admin_user, fixed_now):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    rita = make_reviewer(queue, "rita")
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "queue_reviewers": True, "email": True}])
    req = make_request(agent=agent, risk="high", now=fixed_now)
    jobs.fire_due_escalations(now=fixed_now)
    assert jobs.deliver_pending_notifications(now=fixed_now) == 2
    assert [m.to for m in mail.outbox] == [[rita.email]]
    assert f"/approvals/{req.pk}/" in mail.outbox[0].body
    statuses = set(Delivery.objects.filter(request=req).values_list("channel", "status"))
    assert statuses == {("email", "sent"), ("in_app", "sent")}


def test_the_signature_is_hmac_sha256_of_the_body():
    body = b'{"a":1}'
    assert notify.sign(body, b"k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_the_in_app_fragment_escapes_the_title():
    from approvals import live

    html = live.notification_fragment(delivery_id=1, title="<script>x</script>", url="/approvals/1/")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_user_topics_are_only_for_that_user():
    from approvals.live import may_watch_user

    class U:
        pk = 7

    assert may_watch_user(U(), "7") and not may_watch_user(U(), "8")


@pytest.mark.django_db
def test_an_action_name_with_a_line_break_cannot_stop_its_escalation_email(agent, admin_user, fixed_now):
    """The title (the mail's subject) holds the agent's action name; a line break there made every send fail
    (BadHeaderError), so an agent could keep its own request from paging anyone."""
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    rita = make_reviewer(queue, "rita")
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "queue_reviewers": True, "email": True}])
    req = make_request(agent=agent, action="refunds.issue\r\nBcc: attacker@example.test", risk="high", now=fixed_now)
    jobs.fire_due_escalations(now=fixed_now)
    assert jobs.deliver_pending_notifications(now=fixed_now) == 2
    assert [m.to for m in mail.outbox] == [[rita.email]] and not mail.outbox[0].bcc
    assert "\n" not in mail.outbox[0].subject and "refunds.issue" in mail.outbox[0].subject
    assert set(Delivery.objects.filter(request=req).values_list("status", flat=True)) == {"sent"}

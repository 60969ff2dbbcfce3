"""A webhook URL the sender cannot parse is refused on save, and one saved anyway fails once, recorded.

Django's URLField accepts host names httpx (the sender) refuses: full-width letters
(``https://ｅｘａｍｐｌｅ.ｃｏｍ/``), circled letters, a combining accent, a zero-width joiner. The save-time
check resolved such a name with Python's own IDNA codec, found nothing and accepted it; every send
then raised httpx.InvalidURL, which is not an httpx.HTTPError: the delivery job stopped with a traceback
at that delivery, recorded no attempt, left it pending to be tried (and crash) again after each lease,
and the deliveries after it in that round were not sent. An ASCII name that is not valid IDNA
(``xn--a.com``) crashed the send the same way, building the Host header.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import DeliveryStatus as PromptDeliveryStatus
from agents.models import PromptWebhook, WebhookAttempt, WebhookDelivery
from agents.prompts import webhooks
from approvals import jobs
from approvals.models import Delivery, DeliveryAttempt, DeliveryStatus, EscalationMatrix
from console.models import AuditEntry
from approvals.services import update_matrix
from tests.approvals.helpers import make_queue, make_request, make_rule
from tests.approvals.test_notify import Receiver
from tests.approvals.test_views_policies import level
from tests.console.test_egress import fake_dns
from tests.hardening.test_webhook_ssrf import _move_label, prompt, queue  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

UNPARSEABLE = ["https://ｅｘａｍｐｌｅ.ｃｏｍ/hook", "https://ⓔxample.com/hook", "https://e\u0301xample.com/hook",
               "https://\u200dexample.com/hook", "https://xn--a.com/hook"]


@pytest.mark.parametrize("url", UNPARSEABLE)
def test_the_matrix_refuses_a_url_the_sender_cannot_parse_beside_the_field(admin_client_, queue, monkeypatch, url):
    fake_dns(monkeypatch, {})
    data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0, webhook_url=url)}
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/", data)
    assert response.status_code == 400
    field = response.content.decode().split('data-field-error="level-0-webhook_url"')[1].split("</div>")[0]
    assert "cannot be sent to" in field
    assert not EscalationMatrix.objects.filter(queue=queue).exists()


def test_a_prompt_webhook_the_sender_cannot_parse_is_refused_naming_the_url_field(admin_client_, prompt,
                                                                                   monkeypatch):
    fake_dns(monkeypatch, {})
    response = admin_client_.post("/prompts/support-reply/webhooks/",
                                  {"url": UNPARSEABLE[0], "secret": "s" * 20}, follow=True)
    assert "Webhook not added: url: " in response.content.decode()
    assert not PromptWebhook.objects.exists()
    assert not AuditEntry.objects.filter(action="prompt.webhook_added").exists()


def _request_with_webhook(agent, admin_user, now, url: str, action: str):
    queue = make_queue(f"oncall-{action}")
    make_rule(action_pattern=action, queue=queue, order=1)
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "webhook_url": url, "webhook_format": "generic"}])
    return make_request(agent=agent, action=action, risk="high", now=now, summary="Refund")


@pytest.mark.parametrize("url", [UNPARSEABLE[0], UNPARSEABLE[-1]])
def test_an_escalation_webhook_saved_with_such_a_url_fails_recorded_and_the_round_goes_on(
        agent, admin_user, fixed_now, settings, monkeypatch, url):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    fake_dns(monkeypatch, {})
    with Receiver() as receiver:
        # Saved through the service (no form check), the bad one first in the round.
        bad = _request_with_webhook(agent, admin_user, fixed_now, url, "refunds.bad")
        good = _request_with_webhook(agent, admin_user, fixed_now, receiver.url, "refunds.good")
        assert jobs.fire_due_escalations(now=fixed_now) == 2
        assert jobs.deliver_pending_notifications(now=fixed_now) == 1
    assert len(receiver.received) == 1
    assert Delivery.objects.get(request=good, channel="webhook").status == DeliveryStatus.SENT
    delivery = Delivery.objects.get(request=bad, channel="webhook")
    assert delivery.attempts == 1 and delivery.last_error
    assert DeliveryAttempt.objects.filter(delivery=delivery, ok=False).count() == 1


def test_a_prompt_webhook_saved_with_such_a_url_fails_once_recorded(prompt, admin_user, monkeypatch):  # noqa: F811
    fake_dns(monkeypatch, {})
    PromptWebhook.objects.create(prompt=prompt, url=UNPARSEABLE[0], secret="s" * 20)
    _move_label(prompt, admin_user)
    now = timezone.now() + timedelta(minutes=1)
    assert webhooks.deliver_due(now=now) == 0
    webhooks.deliver_due(now=now + timedelta(hours=2))
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == PromptDeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_error.startswith("refused: ") and "cannot be sent to" in delivery.last_error
    assert WebhookAttempt.objects.count() == 1

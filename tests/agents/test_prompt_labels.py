import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import pytest

from agents import services
from agents.models import (
    DeliveryStatus,
    LabelMove,
    PromptLabel,
    PromptWebhook,
    WebhookAttempt,
    WebhookDelivery,
)
from agents.prompts import webhooks
from console.models import AuditEntry
from tests.agents.test_prompt_fixtures import add_version, make_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt():
    p = make_prompt()
    add_version(p, "v2 {ticket}")
    add_version(p, "v3 {ticket}")
    return p


def v(prompt, n):
    return prompt.versions.get(number=n)


def test_admin_moves_production_and_it_is_audited(prompt, admin_user):
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    services.move_label(prompt=prompt, label="production", version=v(prompt, 2), actor=admin_user, reason="better")
    assert PromptLabel.objects.get(prompt=prompt, name="production").version.number == 2
    entry = AuditEntry.objects.filter(action="prompt.label_moved").order_by("-id").first()
    assert entry.actor == "user:ada"
    assert entry.before == {"label": "production", "version": 1}
    assert entry.after["version"] == 2 and entry.after["reason"] == "better"


def test_rollback_returns_the_label_to_its_previous_version_audited(prompt, admin_user):
    for n in (1, 3):
        services.move_label(prompt=prompt, label="production", version=v(prompt, n), actor=admin_user)
    move = services.rollback_label(prompt=prompt, label="production", actor=admin_user)
    assert move.is_rollback and move.to_version.number == 1 and move.from_version.number == 3
    assert PromptLabel.objects.get(prompt=prompt, name="production").version.number == 1
    assert AuditEntry.objects.filter(action="prompt.label_rolled_back").count() == 1


def test_production_without_history_cannot_be_rolled_back(prompt, admin_user):
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    with pytest.raises(services.NothingToRollBack):
        services.rollback_label(prompt=prompt, label="production", actor=admin_user)


def test_rolling_back_a_new_canary_removes_it(prompt, admin_user):
    services.move_label(prompt=prompt, label="canary", version=v(prompt, 3), actor=admin_user, share=20)
    services.rollback_label(prompt=prompt, label="canary", actor=admin_user)
    assert not PromptLabel.objects.filter(prompt=prompt, name="canary").exists()
    last = LabelMove.objects.filter(prompt=prompt).first()
    assert last.to_version is None and last.is_rollback


@pytest.mark.parametrize("who", ["reviewer", "operator", "agent", "anonymous-string"])
def test_only_admins_move_labels(prompt, who, reviewer, operator, agent):
    actor = {"reviewer": reviewer, "operator": operator, "agent": agent, "anonymous-string": "someone"}[who]
    with pytest.raises(services.LabelNotAllowed):
        services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=actor)
    assert not PromptLabel.objects.exists()
    assert not LabelMove.objects.exists()


def test_moving_to_the_same_place_changes_nothing(prompt, admin_user):
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    assert LabelMove.objects.count() == 1


def test_canary_share_must_be_a_percentage(prompt, admin_user):
    with pytest.raises(ValueError):
        services.move_label(prompt=prompt, label="canary", version=v(prompt, 2), actor=admin_user, share=150)


def test_a_label_move_is_sent_signed_to_subscribers(prompt, admin_user, fixed_now):
    hook = PromptWebhook.objects.create(prompt=prompt, url="https://hooks.example.test/p", secret="s" * 20)
    PromptWebhook.objects.create(prompt=None, url="https://all.example.test/", secret="t" * 20)
    services.move_label(prompt=prompt, label="production", version=v(prompt, 2), actor=admin_user)
    assert WebhookDelivery.objects.count() == 2
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(204)

    sent = webhooks.deliver_due(now=fixed_now + timedelta(days=1), transport=httpx.MockTransport(handler))
    assert sent == 2
    request = next(r for r in seen if r.url.host == "hooks.example.test")
    body = request.content
    ts = request.headers["X-Console-Timestamp"]
    expected = "sha256=" + hmac.new(hook.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert request.headers["X-Console-Signature"] == expected
    payload = json.loads(body)
    assert payload["prompt"] == prompt.name and payload["to_version"] == 2 and payload["label"] == "production"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    # Delivered rows are not sent again.
    assert webhooks.deliver_due(now=fixed_now + timedelta(days=2), transport=httpx.MockTransport(handler)) == 0


def test_failed_deliveries_are_retried_with_backoff_then_given_up(prompt, admin_user, fixed_now):
    PromptWebhook.objects.create(prompt=prompt, url="https://down.example.test/", secret="s" * 20)
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    now = fixed_now + timedelta(days=1)
    assert webhooks.deliver_due(now=now, transport=transport) == 0
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1 and delivery.last_error == "HTTP 503"
    assert delivery.next_attempt_at == now + timedelta(seconds=30)
    assert webhooks.deliver_due(now=now + timedelta(seconds=10), transport=transport) == 0  # not yet due
    assert WebhookAttempt.objects.count() == 1
    for _ in range(webhooks.MAX_ATTEMPTS):
        now += timedelta(hours=2)
        webhooks.deliver_due(now=now, transport=transport)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == webhooks.MAX_ATTEMPTS
    assert WebhookAttempt.objects.count() == webhooks.MAX_ATTEMPTS


def test_promoting_the_canary_moves_production_and_ends_the_canary(prompt, admin_user):
    services.move_label(prompt=prompt, label="production", version=v(prompt, 1), actor=admin_user)
    services.move_label(prompt=prompt, label="canary", version=v(prompt, 3), actor=admin_user, share=10)
    services.promote_canary(prompt=prompt, actor=admin_user)
    labels = dict(PromptLabel.objects.filter(prompt=prompt).values_list("name", "version__number"))
    assert labels == {"production": 3}

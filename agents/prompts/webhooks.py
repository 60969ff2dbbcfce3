"""Signed webhooks for label moves: outbox rows written with the move, sent by a job with retries.

Each POST carries ``X-Console-Timestamp`` and ``X-Console-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``"<timestamp>.<body>"`` under the subscriber's secret.
"""

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta

import httpx
from django.db.models import Q

from agents.models import DeliveryStatus, LabelMove, PromptWebhook, WebhookAttempt, WebhookDelivery
from console import egress

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
TIMEOUT_S = 5.0
LEASE = timedelta(seconds=60)  # a claimed delivery is not retried by another worker before this


def payload_for(move: LabelMove) -> dict:
    return {
        "event": "prompt.label_moved",
        "prompt": move.prompt.name,
        "label": move.label,
        "from_version": move.from_version.number if move.from_version_id else None,
        "to_version": move.to_version.number if move.to_version_id else None,
        "share": move.share,
        "rollback": move.is_rollback,
        "actor": move.actor,
        "reason": move.reason,
        "at": move.created_at.isoformat(),
        "move_id": move.pk,
    }


def enqueue_for_move(move: LabelMove) -> int:
    """Write one pending delivery per active subscriber; call inside the move's transaction."""
    hooks = PromptWebhook.objects.filter(Q(prompt=move.prompt_id) | Q(prompt__isnull=True), is_active=True)
    payload = payload_for(move)
    rows = [WebhookDelivery(webhook=hook, move=move, payload=payload, next_attempt_at=move.created_at)
            for hook in hooks]
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))


def deliver_due(*, now: datetime, limit: int = 50, transport: httpx.BaseTransport | None = None) -> int:
    """Send due deliveries once each; record every attempt; give up after MAX_ATTEMPTS. Returns sent count.

    A delivery is claimed by a conditional UPDATE of its ``next_attempt_at`` (a lease), so two
    workers never send the same attempt. A URL that resolves to an internal address is refused
    (console.egress) and its delivery fails at once. ``transport`` stands in for the network in tests
    (and with it for the address check, which needs DNS).
    """
    sent = 0
    due = list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
               .order_by("next_attempt_at")[:limit].values_list("pk", "next_attempt_at"))
    client = (egress.client(timeout=TIMEOUT_S) if transport is None
              else httpx.Client(timeout=TIMEOUT_S, transport=transport, follow_redirects=False))
    with client:
        for pk, old_due in due:
            claimed = WebhookDelivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING,
                                                     next_attempt_at=old_due).update(next_attempt_at=now + LEASE)
            if not claimed:
                continue
            delivery = WebhookDelivery.objects.select_related("webhook").get(pk=pk)
            if _attempt(client, delivery, now):
                sent += 1
    return sent


def _attempt(client: httpx.Client, delivery: WebhookDelivery, now: datetime) -> bool:
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json", "X-Console-Event": "prompt.label_moved",
               "X-Console-Timestamp": timestamp, "X-Console-Delivery": str(delivery.pk),
               "X-Console-Signature": sign(delivery.webhook.secret, timestamp, body)}
    status_code, error, permanent = None, "", False
    try:
        response = client.post(delivery.webhook.url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except egress.Refused as exc:
        error, permanent = f"refused: {exc}"[:500], True
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    attempts = delivery.attempts + 1
    WebhookAttempt.objects.create(delivery=delivery, at=now, status_code=status_code, error=error)
    if not error:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.DELIVERED, attempts=attempts, delivered_at=now, last_error="")
        return True
    log.info("prompt webhook %s attempt %d failed: %s", delivery.webhook.url, attempts, error)
    if permanent or attempts >= MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, attempts=attempts, last_error=error)
    else:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=attempts, last_error=error, next_attempt_at=now + backoff(attempts))
    return False

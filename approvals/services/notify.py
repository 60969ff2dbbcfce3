"""Notifications as outbox rows: written in the caller's transaction, sent later by
``deliver_due`` (the ``approvals-deliver`` job), which records every attempt.

Channels: in-app (live push to ``user-<id>``), e-mail (Django's mail backend),
webhooks (generic JSON or Slack-compatible ``{"text": ...}``), signed with
``X-Console-Signature: sha256=<hex HMAC-SHA256 of the body>`` and retried with
exponential backoff. A webhook URL that resolves to an internal address is refused (console.egress)
and the delivery fails at once, not retried.
"""

import hashlib
import hmac
import json
import logging
import time
import unicodedata
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from approvals import live
from console import egress
from approvals.models import (
    ApprovalRequest,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EscalationFiring,
    WebhookFormat,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 10          # 10 s, 20 s, 40 s, 80 s, 160 s between tries
BACKOFF_MAX_S = 3600
LEASE_S = 60                 # a worker that dies mid-send frees the row after this
WEBHOOK_TIMEOUT_S = 5.0
SIGNATURE_HEADER = "X-Console-Signature"


def signing_secret() -> bytes:
    configured = getattr(settings, "WEBHOOK_SIGNING_SECRET", "")
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"approvals-webhook-signing", hashlib.sha256).hexdigest().encode()


def sign(body: bytes, secret: bytes | None = None) -> str:
    """The header value receivers verify: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret or signing_secret(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


# --- writing the outbox -----------------------------------------------------------------------


def request_payload(req: ApprovalRequest, *, event: str, level: int | None = None, repeat: int = 0) -> dict:
    return {
        "event": event,
        "level": level,
        "repeat": repeat,
        "request": {
            "id": req.pk,
            "agent": req.agent.name,
            "action": req.action,
            "risk": req.risk,
            "summary": req.summary[:500],
            "resource": req.resource,
            "status": req.status,
            "queue": req.queue.name if req.queue_id else None,
            "due_at": req.due_at.isoformat() if req.due_at else None,
            "url": settings.CONSOLE_BASE_URL + req.url_path,
        },
    }


def title_for(req: ApprovalRequest, event: str) -> str:
    """One line (it is a mail subject): control characters of the agent's action name become spaces,
    so a line break there can neither add a header nor make every send fail (BadHeaderError)."""
    what = "SLA breached" if event == "approval.breached" else "Approval needed"
    action = "".join(" " if unicodedata.category(c) == "Cc" else c for c in req.action)
    return f"{what}: {req.agent.name} wants {action} ({req.risk}) #{req.pk}"[:300]


def recipients_of(req: ApprovalRequest, level: dict, cache: dict | None = None) -> list:
    """Users (active) a level names: listed users, members of listed groups, the queue's reviewers.

    ``cache`` (a dict kept for one sweep) saves the query for requests of the same queue and level.
    """
    key = (req.queue_id if level.get("queue_reviewers") else None, tuple(level.get("user_ids") or ()),
           tuple(level.get("group_ids") or ()))
    if cache is not None and key in cache:
        return cache[key]
    users = get_user_model().objects.filter(is_active=True)
    who = Q(pk__in=level.get("user_ids") or []) | Q(groups__in=level.get("group_ids") or [])
    if level.get("queue_reviewers") and req.queue_id:
        who |= Q(approval_queues=req.queue_id)
    found = list(users.filter(who).distinct().order_by("pk"))
    if cache is not None:
        cache[key] = found
    return found


def build_deliveries(*, req: ApprovalRequest, levels: list[dict], firing: EscalationFiring | None,
                     event: str, now: datetime, cache: dict | None = None) -> list[Delivery]:
    """Unsaved pending delivery rows for every recipient of ``levels`` (deduplicated per channel)."""
    payload = request_payload(req, event=event, level=firing.level if firing else None,
                              repeat=firing.repeat if firing else 0)
    title = title_for(req, event)
    rows, seen = [], set()
    for level in levels:
        for user in recipients_of(req, level, cache):
            if ("in_app", user.pk) not in seen:
                seen.add(("in_app", user.pk))
                rows.append(Delivery(request=req, firing=firing, channel=Channel.IN_APP, user=user,
                                     recipient=user.get_username(), title=title, payload=payload,
                                     next_attempt_at=now))
            if level.get("email", True) and user.email and ("email", user.email) not in seen:
                seen.add(("email", user.email))
                rows.append(Delivery(request=req, firing=firing, channel=Channel.EMAIL, user=user,
                                     recipient=user.email, title=title, payload=payload, next_attempt_at=now))
        url = level.get("webhook_url")
        if url and ("webhook", url) not in seen:
            seen.add(("webhook", url))
            rows.append(Delivery(request=req, firing=firing, channel=Channel.WEBHOOK, recipient=url,
                                 webhook_format=level.get("webhook_format") or WebhookFormat.GENERIC,
                                 title=title, payload=payload, next_attempt_at=now))
    return rows


def create_deliveries(*, req: ApprovalRequest, levels: list[dict], firing: EscalationFiring | None,
                      event: str, now: datetime) -> list[Delivery]:
    """Pending delivery rows for every recipient of ``levels``; joins the caller's transaction (the outbox)."""
    return Delivery.objects.bulk_create(build_deliveries(req=req, levels=levels, firing=firing, event=event,
                                                         now=now))


# --- sending ----------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """One failed attempt; ``permanent`` ones (a refused address) are not retried."""

    def __init__(self, message: str, status_code: int | None = None, *, permanent: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.permanent = permanent


def webhook_body(delivery: Delivery) -> bytes:
    if delivery.webhook_format == WebhookFormat.SLACK:
        url = (delivery.payload.get("request") or {}).get("url", "")
        # Slack's mrkdwn needs &, <, > escaped; the agent's text is untrusted.
        text = delivery.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = {"text": f"{text} <{url}|open>" if url else text}
    else:
        body = delivery.payload
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _send_webhook(delivery: Delivery) -> int:
    body = webhook_body(delivery)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body),
               "X-Console-Delivery": str(delivery.pk), "User-Agent": "agent-ops-console"}
    try:
        with egress.client(timeout=WEBHOOK_TIMEOUT_S) as client:
            response = client.post(delivery.recipient, content=body, headers=headers)
    except egress.Refused as exc:
        raise DeliveryFailed(f"refused: {exc}", permanent=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}", response.status_code)
    return response.status_code


def _send_email(delivery: Delivery) -> None:
    request = delivery.payload.get("request") or {}
    body = (f"{delivery.title}\n\nSummary: {request.get('summary', '')}\nResource: {request.get('resource', '')}\n"
            f"Due: {request.get('due_at') or '-'}\n\nDecide: {request.get('url', '')}\n")
    try:
        send_mail(delivery.title, body, settings.DEFAULT_FROM_EMAIL, [delivery.recipient], fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - any backend error is a failed attempt to retry
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc


def _send_in_app(delivery: Delivery) -> None:
    url = (delivery.payload.get("request") or {}).get("url", "")
    html = live.notification_fragment(delivery_id=delivery.pk, title=delivery.title, url=url)
    # The row is the notification (the inbox reads it); the push only makes it appear at once.
    live.push_to_user(delivery.user_id, html)


def send_one(delivery: Delivery, *, now: datetime) -> bool:
    """Try one delivery once, record the attempt, schedule a retry or give up. True if sent."""
    started = time.monotonic()
    status_code, error, permanent = None, "", False
    try:
        if delivery.channel == Channel.WEBHOOK:
            status_code = _send_webhook(delivery)
        elif delivery.channel == Channel.EMAIL:
            _send_email(delivery)
        else:
            _send_in_app(delivery)
        ok = True
    except DeliveryFailed as exc:
        ok, error, status_code, permanent = False, str(exc)[:2000], exc.status_code, exc.permanent
        if permanent:
            log.warning("delivery %s to %s given up: %s", delivery.pk, delivery.recipient, error)
    duration_ms = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(delivery=delivery, at=now, ok=ok, status_code=status_code, error=error,
                                   duration_ms=duration_ms)
    attempts = delivery.attempts + 1
    if ok:
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT, attempts=attempts, sent_at=now,
                                                       last_error="")
    elif permanent or attempts >= MAX_ATTEMPTS:
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, attempts=attempts,
                                                       last_error=error)
    else:
        Delivery.objects.filter(pk=delivery.pk).update(attempts=attempts, last_error=error,
                                                       next_attempt_at=now + backoff(attempts))
    return ok


def deliver_due(*, now: datetime, limit: int = 100) -> int:
    """Send due deliveries; each is leased by a conditional UPDATE so two workers never send it together.

    At-least-once: a worker killed between sending and recording sends again after the lease.
    """
    sent = 0
    candidates = list(Delivery.objects.due(now).order_by("next_attempt_at", "id")
                      .values_list("pk", "next_attempt_at")[:limit])
    for pk, next_at in candidates:
        leased = Delivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING, next_attempt_at=next_at).update(
            next_attempt_at=now + timedelta(seconds=LEASE_S))
        if not leased:
            continue  # another worker has it
        delivery = Delivery.objects.get(pk=pk)
        if send_one(delivery, now=now):
            sent += 1
    return sent


def mark_read(*, user, delivery_ids: list[int], now: datetime) -> int:
    return Delivery.objects.filter(pk__in=delivery_ids, user=user, channel=Channel.IN_APP,
                                   read_at__isnull=True).update(read_at=now)



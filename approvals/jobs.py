"""Periodic approvals work: plain idempotent functions taking an explicit ``now``.

Registered in ``settings.CONSOLE_JOBS`` (every 2 s), run by Celery beat in
production and by the in-process scheduler in the embedded mode.
"""

from datetime import datetime

from approvals.services import conflicts, decide, escalate, notify


def fire_due_escalations(*, now: datetime, limit: int = 500) -> int:
    """Fire each due (request, level, repeat) once; safe with several workers."""
    return escalate.fire_due_escalations(now=now, limit=limit)


def sweep(*, now: datetime) -> dict:
    """One escalation sweep: timeouts, SLA breaches, lapsed claims, then due escalation levels.

    Each part reads only due rows through a partial index on pending requests.
    """
    return {
        "expired": decide.expire_overdue(now=now),
        "breached": escalate.handle_breaches(now=now),
        "claims_lapsed": decide.expire_claims(now=now),
        "fired": escalate.fire_due_escalations(now=now),
    }


def deliver_pending_notifications(*, now: datetime, limit: int = 100) -> int:
    """Send due in-app, e-mail and webhook deliveries; failures retry with backoff."""
    return notify.deliver_due(now=now, limit=limit)


def release_stale_conflicts(*, now: datetime) -> int:
    """Release requests held by a conflict whose other request finished (or ran past the bound) unnoticed."""
    return conflicts.release_stale_holds(now=now)

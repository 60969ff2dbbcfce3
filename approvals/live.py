"""Live pushes of the approvals app, all after commit and best effort.

- ``queue-<id>`` and ``approvals`` (every staff page listing requests) get a tiny
  signal that makes htmx re-GET the request's card from the normal view, where
  the permission check lives (the card's buttons depend on the viewer).
- Agents waiting in ``GET /api/v1/approvals/{id}?wait=N`` are woken through
  ``approvals.waiters`` (Redis pub/sub), not through the channel layer.
- ``user-<id>`` gets in-app notifications; only that user may subscribe.
- The request's run shows "waiting for approval" while a request of its trace is pending
  (``traces.services.set_run_waiting``, which pushes the run's row).

Page contract for the UI: inside the ``ws-connect`` element put
``<div id="approval-signals" hidden></div>`` and a list ``#approval-list``;
each request card's root is ``<article id="request-<id>">``.
"""

import json
import logging
import time

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from console import live

log = logging.getLogger(__name__)


def card_url(request_id: int) -> str:
    try:
        return reverse("approvals:card", args=[request_id])
    except NoReverseMatch:
        return f"/approvals/{int(request_id)}/card/"


def request_signal(request_id: int, *, created: bool) -> str:
    """The element that makes htmx fetch the card: appended when new, replaced when changed."""
    if created:
        target, swap = "#approval-list", "beforeend"
    else:
        target, swap = f"#request-{int(request_id)}", "outerHTML"
    return format_html(
        '<div hx-swap-oob="innerHTML:#approval-signals"><div data-approval-id="{}" data-event="{}" '
        'hx-get="{}" hx-trigger="load" hx-target="{}" hx-swap="{}"></div></div>',
        int(request_id), "created" if created else "changed", card_url(request_id), target, swap,
    )


def push_request_created_on_commit(request_id: int, queue_id: int | None) -> None:
    live.on_commit(lambda: _push_request(request_id, queue_id, created=True))
    live.on_commit(lambda: mark_run_waiting(request_id))


def push_request_changed_on_commit(request_id: int, queue_id: int | None) -> None:
    live.on_commit(lambda: _push_request(request_id, queue_id, created=False))
    live.on_commit(lambda: mark_run_waiting(request_id))


def mark_run_waiting(request_id: int) -> None:
    """The request's run (its agent's run of its ``trace_id``) is "waiting for approval" while any request
    of that agent and trace is pending, and running again once none is. Every created or changed request
    passes here after commit. A run that does not exist yet (the agent asked before its spans arrived) is
    left to its spans, and so is another agent's run of that trace id (not this agent's to mark)."""
    from approvals.models import ApprovalRequest, Status
    from traces import services as trace_services

    row = ApprovalRequest.objects.filter(pk=request_id).values("trace_id", "agent_id").first()
    if not row or not row["trace_id"]:
        return
    waiting = ApprovalRequest.objects.filter(agent_id=row["agent_id"], trace_id__iexact=row["trace_id"],
                                             status=Status.PENDING).exists()
    try:
        trace_services.set_run_waiting(row["trace_id"], waiting, agent_id=row["agent_id"])
    except Exception:  # noqa: BLE001 - a display flag; the request itself is committed
        log.warning("could not mark the run of approval %s as waiting=%s", request_id, waiting, exc_info=True)


def _push_request(request_id: int, queue_id: int | None, *, created: bool) -> None:
    html = request_signal(request_id, created=created)
    if queue_id is not None:
        live.send_to_group(f"queue-{queue_id}", html)
    live.send_to_group("approvals", html)


def notify_waiters_on_commit(request_id: int, status: str) -> None:
    """Wake agents waiting on this request (any process) once the decision is committed."""
    live.on_commit(lambda: notify_waiters(request_id, status))


def notify_waiters(request_id: int, status: str) -> bool:
    """Wake the waiters of this process at once, and announce the change to every process; False if that failed.

    A hint, never the state: waiters re-read the row. Call only after commit.
    """
    from approvals import waiters

    message = {"id": int(request_id), "status": status, "sent_at": time.time()}
    body = _answer_body(request_id, status)
    if body is not None:
        message["body"] = body
    waiters.wake_local(request_id, message)
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return True  # the embedded mode: one process, woken above
    try:
        _publisher(url).publish(waiters.decided_channel(), json.dumps(message))
    except Exception:  # noqa: BLE001 - a waiter still gets the answer at its next re-read
        log.warning("waking waiters of approval %s failed", request_id, exc_info=True)
        return False
    return True


MAX_CARRIED_BODY = 16 * 1024  # larger answers are read by the waiter from the database


def _answer_body(request_id: int, status: str) -> str | None:
    """The API's answer for a decided request, rendered once from the committed row, for waiters to send as is."""
    from approvals.api import ApprovalOut, _answerable, answer
    from approvals.models import Status

    if status == Status.PENDING:
        return None
    try:
        req = _answerable().filter(pk=request_id).first()
        if req is None or req.status != status:
            return None  # changed again since: let the waiters read it
        body = ApprovalOut(**answer(req)).model_dump_json()
    except Exception:  # noqa: BLE001 - the waiters read the row instead
        log.warning("rendering the answer of approval %s for its waiters failed", request_id, exc_info=True)
        return None
    return body if len(body) <= MAX_CARRIED_BODY else None


_publishers: dict[str, object] = {}


def _publisher(url: str):
    """A thread-safe Redis client per URL, kept for the process (its pool reconnects; short timeouts)."""
    client = _publishers.get(url)
    if client is None:
        import redis

        client = _publishers[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                                         health_check_interval=30)
    return client


def notification_fragment(*, delivery_id: int, title: str, url: str) -> str:
    """An in-app notification: prepended to ``#notification-list`` (title is escaped)."""
    return format_html(
        '<div hx-swap-oob="afterbegin:#notification-list"><li class="notification" id="notification-{}">'
        '<a href="{}">{}</a></li></div>',
        int(delivery_id), url, title,
    )


def push_to_user(user_id: int, html: str) -> bool:
    return live.send_to_group(f"user-{int(user_id)}", html)


# --- topics (registered in ApprovalsConfig.ready) -----------------------------------------


def may_watch_queue(user, rest: str) -> bool:
    from approvals.models import Queue
    from console.roles import Role, has_role

    if not rest.isdigit():
        return False
    if has_role(user, Role.OPERATOR):
        return Queue.objects.filter(pk=int(rest)).exists()
    return has_role(user, Role.REVIEWER) and Queue.objects.filter(pk=int(rest), members=user).exists()


def may_watch_all_queues(user, rest: str) -> bool:
    """``approvals`` signals every request of every queue: only for who may see them all (Operators, Admins)."""
    from console.roles import Role, has_role

    return not rest and has_role(user, Role.OPERATOR)


def may_watch_user(user, rest: str) -> bool:
    return rest.isdigit() and int(rest) == user.pk


def register_topics() -> None:
    live.register_topic("approvals", may_watch_all_queues)
    live.register_topic("queue", may_watch_queue)
    live.register_topic("user", may_watch_user)

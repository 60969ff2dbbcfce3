"""Live pushes of the approvals app, all after commit and best effort.

- ``queue-<id>`` and ``approvals`` (every staff page listing requests) get a tiny
  signal that makes htmx re-GET the request's card from the normal view, where
  the permission check lives (the card's buttons depend on the viewer).
- ``approval-<id>`` is not a browser topic: agents waiting in
  ``GET /api/v1/approvals/{id}?wait=N`` listen on it.
- ``user-<id>`` gets in-app notifications; only that user may subscribe.

Page contract for the UI: inside the ``ws-connect`` element put
``<div id="approval-signals" hidden></div>`` and a list ``#approval-list``;
each request card's root is ``<article id="request-<id>">``.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from console import live

log = logging.getLogger(__name__)

WAITER_GROUP = "approval-{}"
EVENT_DECIDED = "approval.decided"


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


def push_request_changed_on_commit(request_id: int, queue_id: int | None) -> None:
    live.on_commit(lambda: _push_request(request_id, queue_id, created=False))


def _push_request(request_id: int, queue_id: int | None, *, created: bool) -> None:
    html = request_signal(request_id, created=created)
    if queue_id is not None:
        live.send_to_group(f"queue-{queue_id}", html)
    live.send_to_group("approvals", html)


def notify_waiters_on_commit(request_id: int, status: str) -> None:
    """Wake agents waiting on this request (any process) once the decision is committed."""
    live.on_commit(lambda: notify_waiters(request_id, status))


def notify_waiters(request_id: int, status: str) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(WAITER_GROUP.format(request_id),
                                        {"type": EVENT_DECIDED, "id": request_id, "status": status})
    except Exception:  # noqa: BLE001 - a waiter still gets the answer when its wait ends
        log.warning("waking waiters of approval %s failed", request_id, exc_info=True)
        return False
    return True


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


def may_watch_user(user, rest: str) -> bool:
    return rest.isdigit() and int(rest) == user.pk


def register_topics() -> None:
    live.register_topic("approvals", live.any_role)
    live.register_topic("queue", may_watch_queue)
    live.register_topic("user", may_watch_user)

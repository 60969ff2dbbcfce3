"""Live pushes for runs, coalesced so ingest never waits for them.

Ingest hands run ids (and the seq range each batch took) to
:func:`spans_ingested_on_commit`; after commit they are only recorded as dirty.
A flush, at most every ``FLUSH_INTERVAL`` seconds, renders for each dirty run
the new span rows (``traces/partials/span_rows.html``, appended into
``#spans-<run id>``) for group ``run-<id>`` and the run's row
(``traces/partials/run_row.html``) for group ``runs`` — one message per run and
one for the list per flush, never one per span.

Under the ASGI server the flush is a task on the server's event loop (the
database work and rendering run in a worker thread); without a known loop
(commands, tests) a timer thread does the same. :func:`flush` does it at once.
"""

import asyncio
import logging
import threading
import time

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections
from django.db.models import Q
from django.template.loader import render_to_string

from console import live as console_live

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25
MAX_ROWS_PER_PUSH = 500  # beyond this the page catches up from its cursor over HTTP
MAX_LIST_ROWS = 50  # runs-list rows per flush: the most recent dirty runs (a page shows about that many)

_lock = threading.Lock()
_dirty: dict[int, list[tuple[int, int]]] = {}  # run id -> seq ranges (lo, hi] not yet pushed
_scheduled = False
_scheduled_at = 0.0  # monotonic time of the last scheduling, to notice a flush that never ran
_STALE_AFTER = 2.0  # a loop that stopped before its flush ran must not silence pushes for good
_loop: asyncio.AbstractEventLoop | None = None


def use_event_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Flush on this (the ASGI server's) loop; called by the async ingest view."""
    global _loop
    _loop = loop


def spans_ingested_on_commit(run_ids, seq_ranges: dict[int, tuple[int, int]] | None = None) -> None:
    """After commit, mark runs dirty; ``seq_ranges`` maps run id to the (lo, hi] seqs just written."""
    ids = list(run_ids)
    ranges = dict(seq_ranges or {})
    console_live.on_commit(lambda: mark_dirty(ids, ranges))


def mark_dirty(run_ids, seq_ranges: dict[int, tuple[int, int]] | None = None) -> None:
    global _scheduled, _scheduled_at
    with _lock:
        for run_id in run_ids:
            _dirty.setdefault(run_id, [])
        for run_id, (lo, hi) in (seq_ranges or {}).items():
            if hi > lo:
                _dirty.setdefault(run_id, []).append((lo, hi))
        if _scheduled and time.monotonic() - _scheduled_at < _STALE_AFTER:
            return
        _scheduled, _scheduled_at = True, time.monotonic()
    _schedule()


def _schedule() -> None:
    loop = _loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(_flush_later()))
            return
        except RuntimeError:
            pass  # the loop closed meanwhile
    timer = threading.Timer(FLUSH_INTERVAL, _flush_in_thread)
    timer.daemon = True
    timer.start()


async def watched_groups(groups: set[str]) -> set[str]:
    """The groups that have at least one subscriber; all of them when the layer cannot tell.

    Rendering is the expensive part of a push, so runs nobody watches are skipped.
    """
    layer = get_channel_layer()
    if layer is None:
        return set()
    try:
        if hasattr(layer, "_group_key") and hasattr(layer, "consistent_hash"):  # channels_redis
            ordered = sorted(groups)
            counts = []
            for group in ordered:
                connection = layer.connection(layer.consistent_hash(group))
                counts.append(await connection.zcard(layer._group_key(group)))
            return {group for group, count in zip(ordered, counts) if count}
        if isinstance(getattr(layer, "groups", None), dict):  # the in-memory layer
            return {group for group in groups if layer.groups.get(group)}
    except Exception:  # noqa: BLE001 - unknown: push to all
        log.debug("could not read live group membership", exc_info=True)
    return set(groups)


def _groups_of(dirty) -> set[str]:
    return {f"run-{run_id}" for run_id in dirty} | {"runs"}


async def _flush_later() -> None:
    await asyncio.sleep(FLUSH_INTERVAL)
    dirty = _take_dirty()
    if not dirty:
        return
    try:
        watched = await watched_groups(_groups_of(dirty))
        messages = await sync_to_async(_collect_and_close, thread_sensitive=False)(dirty, watched)
    except Exception:  # noqa: BLE001 - live updates are best effort; the page catches up over HTTP
        log.warning("live flush failed", exc_info=True)
        return
    for group, html in messages:
        await console_live.asend_to_group(group, html)


def _flush_in_thread() -> None:
    dirty = _take_dirty()
    if not dirty:
        return
    try:
        watched = async_to_sync(watched_groups)(_groups_of(dirty))
        messages = _collect_and_close(dirty, watched)
    except Exception:  # noqa: BLE001
        log.warning("live flush failed", exc_info=True)
        return
    for group, html in messages:
        console_live.send_to_group(group, html)


def _collect_and_close(dirty, watched) -> list[tuple[str, str]]:
    try:
        return collect(dirty, watched)
    finally:
        close_old_connections()


def _take_dirty() -> dict[int, list[tuple[int, int]]]:
    global _scheduled
    with _lock:
        dirty = dict(_dirty)
        _dirty.clear()
        _scheduled = False
    return dirty


def collect(dirty: dict | None = None, watched: set[str] | None = None) -> list[tuple[str, str]]:
    """Render pushes for ``dirty`` (default: take the pending ones) to the ``watched`` groups (default: all)."""
    from traces.models import Run, Span

    if dirty is None:
        dirty = _take_dirty()
    if not dirty:
        return []
    list_ids = set(sorted(dirty, reverse=True)[:MAX_LIST_ROWS]) if watched is None or "runs" in watched else set()
    run_ids = {run_id for run_id in dirty if watched is None or f"run-{run_id}" in watched} | list_ids
    if not run_ids:
        return []
    messages = []
    rows = []
    runs = Run.objects.filter(pk__in=run_ids).select_related("agent").order_by("id")
    for run in runs:
        ranges = dirty[run.pk]
        if run.pk in list_ids:
            new = any(lo == 0 for lo, _hi in ranges)  # the run's first batch: new in the list
            rows.append(render_to_string("traces/partials/run_row.html", {"run": run, "oob": "new" if new else True}))
        if watched is not None and f"run-{run.pk}" not in watched:
            continue
        if ranges:
            where = Q()
            for lo, hi in ranges:
                where |= Q(seq__gt=lo, seq__lte=hi)
            spans = list(Span.objects.filter(run_id=run.pk).filter(where).order_by("seq")[:MAX_ROWS_PER_PUSH])
            if spans:
                html = render_to_string("traces/partials/span_rows.html",
                                        {"spans": spans, "run_id": run.pk, "run": run, "oob": True})
                messages.append((f"run-{run.pk}", html))
        messages.append((f"run-{run.pk}", render_to_string("traces/partials/run_row.html",
                                                           {"run": run, "oob": True})))
    if rows:
        messages.append(("runs", "".join(rows)))
    return messages


def flush() -> int:
    """Render and send the pending pushes now, in this thread; returns messages sent."""
    sent = 0
    for group, html in collect():
        sent += console_live.send_to_group(group, html)
    return sent

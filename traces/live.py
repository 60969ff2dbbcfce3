"""Live pushes for runs: a quiet run's first change goes out at once, a busy run's are coalesced.

Ingest hands run ids (and the seq range each batch took) to
:func:`spans_ingested_on_commit`; after commit :func:`mark_dirty` only records
them (a dict update under a lock: no query, render or send on the write path)
and nudges the flusher. One flusher at a time pushes what is due:

- a run is due when it has had no push for ``FLUSH_INTERVAL``. So the first
  span of a quiet run is pushed without waiting (leading edge), and what
  arrives within the interval after a push goes out together at its end
  (trailing edge): a flood of spans on one run gives at most one push per
  interval, never one per span, and its last spans are never left behind.
- the runs list likewise, every ``LIST_INTERVAL`` at most (its rows come from
  every run, so it is coalesced across runs).

A due run gets its new span rows (``traces/partials/span_rows.html``, appended
into ``#spans-<run id>``) and its header row on group ``run-<id>``; the list one
message with the rows (``traces/partials/run_row.html``) of the runs changed
since its last push, at most ``MAX_LIST_ROWS``. Only watched groups are rendered.
On the server's loop the list push (many rows) runs beside the run pages, one in
flight at a time, so a run page never waits behind it.

Under the ASGI server the flusher is a task on the server's event loop (the
database work and rendering run in a worker thread); without a known loop
(commands, tests) a thread does the same. :func:`flush` pushes everything
pending at once; :func:`flush_due` what is due at a given time.
"""

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections
from django.db.models import Q
from django.template.loader import render_to_string

from console import live as console_live

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05  # at most one push per run per interval (seconds)
LIST_INTERVAL = 0.2  # at most one runs-list push per interval
MAX_ROWS_PER_PUSH = 500  # beyond this the page catches up from its cursor over HTTP
# After a round that pushed, the loop flusher waits this long before the next: under load the changes of
# many runs then share one round (one Redis membership read) instead of a round per ingest batch. A quiet
# run's first change still goes out at once.
ROUND_GAP = 0.02
MAX_LIST_ROWS = 50  # runs-list rows per push: the most recent changed runs (a page shows about that many)
_STALE_AFTER = 2.0  # a flusher silent this long past its wake-up time died with its loop
_STUCK_AFTER = 10.0  # a flusher busy this long on one push is presumed lost (its loop hangs)

_clock = time.monotonic  # tests replace it to control time

_lock = threading.Lock()
_dirty: dict[int, list[tuple[int, int]]] = {}  # run id -> seq ranges (lo, hi] not yet pushed to run-<id>
_listed: dict[int, bool] = {}  # run id -> new to the list; rows not yet pushed to ``runs``
_pushed_at: dict[int, float] = {}  # run id -> clock time of its last push, kept for one interval
_list_pushed_at = float("-inf")
_list_busy = False  # a runs-list push is in flight beside the run pages (loop flusher); the next waits for it
_list_task: asyncio.Task | None = None
_scheduled = False  # a flusher is alive (pushing or waiting): mark_dirty nudges it rather than start another
_scheduled_at = 0.0  # clock time the flusher last started a round, to notice one lost with its loop
_wake_at = float("-inf")  # when the waiting flusher looks again by itself; -inf while it is pushing
_wake = None  # callable that nudges the waiting flusher, False if it cannot (set by the flusher)
_flusher_loop: asyncio.AbstractEventLoop | None = None  # the loop the flusher runs on (None: a thread)
_generation = 0  # of the current flusher; one replaced (presumed lost) stops when it looks again
_loop: asyncio.AbstractEventLoop | None = None
_task: asyncio.Task | None = None  # the loop's flusher (a reference keeps the task alive)


@dataclass
class Batch:
    """What one round pushes: due runs with their seq ranges, and the list rows (None: list not due)."""

    runs: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    listed: dict[int, bool] | None = None

    def __bool__(self) -> bool:
        return bool(self.runs or self.listed)

    def groups(self) -> set[str]:
        return {f"run-{run_id}" for run_id in self.runs} | ({"runs"} if self.listed else set())


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
    """Record changed runs; start or nudge the flusher when something is due before it would look.

    Cheap and never blocking: safe on the ingest path.
    """
    now = _clock()
    seq_ranges = seq_ranges or {}
    with _lock:
        due = float("inf")
        for run_id in set(run_ids) | set(seq_ranges):
            ranges = _dirty.setdefault(run_id, [])
            lo, hi = seq_ranges.get(run_id, (0, 0))
            if hi > lo:
                ranges.append((lo, hi))
            _listed[run_id] = _listed.get(run_id, False) or (lo == 0 and hi > 0)
            due = min(due, _pushed_at.get(run_id, float("-inf")) + FLUSH_INTERVAL)
        if _listed and not _list_busy:
            due = min(due, _list_pushed_at + LIST_INTERVAL)
        _ensure_flusher(due, now)


def _ensure_flusher(due: float, now: float) -> None:
    """Under ``_lock``: make sure a flusher looks by ``due`` (nudge the waiting one, or start one)."""
    global _scheduled, _scheduled_at, _wake_at
    if due == float("inf"):
        return
    if _scheduled and not _flusher_lost(now):
        if due >= _wake_at:
            return  # the flusher looks by then anyway (or is pushing and looks right after)
        _wake_at = now  # nudged: it looks now; if it does not within _STALE_AFTER, it is lost
        wake = _wake
    else:
        wake = None
    if wake is None or not wake():
        _scheduled, _scheduled_at, _wake_at = True, now, float("-inf")
        _start_flusher()


def _flusher_lost(now: float) -> bool:
    loop = _flusher_loop
    if loop is not None and (loop.is_closed() or not loop.is_running()):
        return True
    if _wake_at > float("-inf"):
        return now > _wake_at + _STALE_AFTER
    return now - _scheduled_at > _STUCK_AFTER


def _start_flusher() -> None:
    """Start a flusher (called under ``_lock``): a task on the server's loop, else a thread."""
    global _flusher_loop, _generation, _list_busy
    _generation += 1
    _list_busy = False  # an in-flight list push may have died with the old flusher's loop
    loop = _loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(_start_task, loop, _generation)
            _flusher_loop = loop
            return
        except RuntimeError:
            pass  # the loop closed meanwhile
    _flusher_loop = None
    threading.Thread(target=_thread_flusher, args=(_generation,), daemon=True, name="traces-live").start()


def _start_task(loop: asyncio.AbstractEventLoop, generation: int) -> None:
    global _task
    _task = loop.create_task(_loop_flusher(generation))


def _nudge_loop(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> bool:
    if loop.is_closed() or not loop.is_running():
        return False
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # closed meanwhile
        return False
    return True


def _nudge_thread(event: threading.Event) -> bool:
    event.set()
    return True


def take_due(now: float, generation: int | None = None, *, list_lane: bool = False) -> tuple[Batch, float | None]:
    """Take what is due at ``now``; also returns when the rest is due (None: nothing left, the flusher ends).

    Taking a run starts its interval: what it gets next waits until the interval ends.
    A flusher passes its ``generation``: once replaced, it gets nothing and ends. With ``list_lane``
    the caller pushes the list rows on their own and calls :func:`_list_done` when it has.
    """
    global _scheduled, _list_pushed_at, _wake_at, _scheduled_at, _list_busy
    batch = Batch()
    with _lock:
        if generation is not None and generation != _generation:
            return batch, None
        _scheduled_at = now
        for run_id, ranges in list(_dirty.items()):
            if _pushed_at.get(run_id, float("-inf")) + FLUSH_INTERVAL <= now:
                batch.runs[run_id] = ranges
                del _dirty[run_id]
                _pushed_at[run_id] = now
        if _listed and not _list_busy and _list_pushed_at + LIST_INTERVAL <= now:
            batch.listed = dict(_listed)
            _listed.clear()
            _list_pushed_at = now
            _list_busy = list_lane
        for run_id, at in list(_pushed_at.items()):
            if at + FLUSH_INTERVAL <= now and run_id not in _dirty:
                del _pushed_at[run_id]
        next_due = min((_pushed_at.get(run_id, now) + FLUSH_INTERVAL for run_id in _dirty), default=None)
        if _listed and not _list_busy:
            next_due = min(next_due or float("inf"), _list_pushed_at + LIST_INTERVAL)
        if batch:
            _wake_at = float("-inf")
        elif next_due is None:
            _scheduled = False
        else:
            _wake_at = next_due
    return batch, next_due


def _take_all() -> Batch:
    global _list_pushed_at
    with _lock:
        batch = Batch(runs=dict(_dirty), listed=dict(_listed) or None)
        now = _clock()
        for run_id in _dirty:
            _pushed_at[run_id] = now
        if _listed:
            _list_pushed_at = now
        _dirty.clear()
        _listed.clear()
    return batch


def _retire(generation: int) -> None:
    """A flusher that failed or was cancelled: the next change starts a new one."""
    global _scheduled
    with _lock:
        if generation == _generation:
            _scheduled = False


async def _loop_flusher(generation: int) -> None:
    try:
        await _loop_rounds(generation)
    except BaseException:
        _retire(generation)
        raise


async def _loop_rounds(generation: int) -> None:
    global _wake, _list_task
    event = asyncio.Event()
    nudge = functools.partial(_nudge_loop, asyncio.get_running_loop(), event)
    while True:
        event.clear()  # before looking: a nudge after this wakes the wait below
        with _lock:
            if generation == _generation:
                _wake = nudge
        batch, next_due = take_due(_clock(), generation, list_lane=True)
        if batch.listed:  # the list (many rows) renders beside the run pages, never ahead of them
            _list_task = asyncio.create_task(_apush_list(batch.listed))
        if batch.runs:
            await apush(Batch(runs=batch.runs))
        if batch:
            await asyncio.sleep(ROUND_GAP)
            continue
        if next_due is None:
            return
        try:
            await asyncio.wait_for(event.wait(), max(0.0, next_due - _clock()))
        except TimeoutError:
            pass


async def _apush_list(listed: dict[int, bool]) -> None:
    try:
        await apush(Batch(listed=listed))
    finally:
        _list_done()


def _list_done() -> None:
    """The list push in flight is sent: the next one may go when its interval ends."""
    global _list_busy
    with _lock:
        _list_busy = False
        if _listed:
            _ensure_flusher(_list_pushed_at + LIST_INTERVAL, _clock())


def _thread_flusher(generation: int) -> None:
    try:
        _thread_rounds(generation)
    except BaseException:
        _retire(generation)
        raise


def _thread_rounds(generation: int) -> None:
    global _wake
    event = threading.Event()
    nudge = functools.partial(_nudge_thread, event)
    while True:
        event.clear()
        with _lock:
            if generation == _generation:
                _wake = nudge
        batch, next_due = take_due(_clock(), generation)
        if batch:
            try:
                push(batch)
            finally:
                close_old_connections()  # this thread's own connection
            continue
        if next_due is None:
            return
        event.wait(max(0.0, next_due - _clock()))


async def watched_groups(groups: set[str]) -> set[str]:
    """The groups that have at least one subscriber; all of them when the layer cannot tell.

    Rendering is the expensive part of a push, so runs nobody watches are skipped.
    One pipelined round trip per Redis host.
    """
    layer = get_channel_layer()
    if layer is None:
        return set()
    try:
        if hasattr(layer, "_group_key") and hasattr(layer, "consistent_hash"):  # channels_redis
            by_host: dict[int, list[str]] = {}
            for group in sorted(groups):
                by_host.setdefault(layer.consistent_hash(group), []).append(group)
            watched = set()
            for index, names in by_host.items():
                pipe = layer.connection(index).pipeline(transaction=False)
                for group in names:
                    pipe.zcard(layer._group_key(group))
                counts = await pipe.execute()
                watched |= {group for group, count in zip(names, counts) if count}
            return watched
        if isinstance(getattr(layer, "groups", None), dict):  # the in-memory layer
            return {group for group in groups if layer.groups.get(group)}
    except Exception:  # noqa: BLE001 - unknown: push to all
        log.debug("could not read live group membership", exc_info=True)
    return set(groups)


async def apush(batch: Batch) -> int:
    """Render (in a worker thread) and send ``batch`` to its watched groups: run pages first, then the list.

    Nothing watched (most rounds under load: new runs nobody has open) costs one Redis round trip.
    """
    sent = 0
    try:
        watched = await watched_groups(batch.groups())
        if not watched:
            return 0
        for render in (render_runs, render_list):
            if render is render_list and "runs" not in watched:
                continue
            if render is render_runs and not any(f"run-{run_id}" in watched for run_id in batch.runs):
                continue
            messages = await sync_to_async(_closing(render), thread_sensitive=False)(batch, watched)
            for group, html in messages:
                sent += await console_live.asend_to_group(group, html)
    except Exception:  # noqa: BLE001 - live updates are best effort; the page catches up over HTTP
        log.warning("live flush failed", exc_info=True)
    return sent


def push(batch: Batch) -> int:
    """:func:`apush` in this thread (no running loop); it uses (and leaves open) this thread's connection."""
    sent = 0
    try:
        watched = async_to_sync(watched_groups)(batch.groups())
        for render in (render_runs, render_list):
            for group, html in render(batch, watched):
                sent += console_live.send_to_group(group, html)
    except Exception:  # noqa: BLE001
        log.warning("live flush failed", exc_info=True)
    return sent


def _closing(render):
    def run(batch, watched):
        try:
            return render(batch, watched)
        finally:
            close_old_connections()

    return run


def render_runs(batch: Batch, watched: set[str] | None = None) -> list[tuple[str, str]]:
    """Per watched due run: its new span rows (if any), then its header row, both for ``run-<id>``."""
    from traces.models import Run, Span

    run_ids = [run_id for run_id in batch.runs if watched is None or f"run-{run_id}" in watched]
    if not run_ids:
        return []
    messages = []
    for run in Run.objects.filter(pk__in=run_ids).select_related("agent").order_by("id"):
        ranges = batch.runs[run.pk]
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
    return messages


def render_list(batch: Batch, watched: set[str] | None = None) -> list[tuple[str, str]]:
    """One ``runs`` message with the rows of the most recently created changed runs (new ones go on top)."""
    from traces.models import Run

    if not batch.listed or (watched is not None and "runs" not in watched):
        return []
    list_ids = sorted(batch.listed, reverse=True)[:MAX_LIST_ROWS]
    new, updated = [], []
    for run in Run.objects.filter(pk__in=list_ids).select_related("agent").order_by("id"):
        is_new = batch.listed[run.pk]
        (new if is_new else updated).append(
            render_to_string("traces/partials/run_row.html", {"run": run, "oob": "new" if is_new else True}))
    # Two messages: an HTML parser drops a <tbody> (the new rows' wrapper) that follows a bare <tr>
    # in the same fragment, so a push mixing both lost its new runs.
    return [("runs", "".join(rows)) for rows in (new, updated) if rows]


def collect(batch: Batch | None = None, watched: set[str] | None = None) -> list[tuple[str, str]]:
    """Render ``batch`` (default: everything pending) for the ``watched`` groups (default: all)."""
    batch = _take_all() if batch is None else batch
    return render_runs(batch, watched) + render_list(batch, watched)


def reset() -> None:
    """Forget pending pushes and retire the flusher (a server's teardown, tests)."""
    global _scheduled, _wake_at, _list_pushed_at, _generation, _wake, _flusher_loop, _list_busy
    with _lock:
        _list_busy = False
        _dirty.clear()
        _listed.clear()
        _pushed_at.clear()
        _generation += 1
        _scheduled, _wake_at, _list_pushed_at, _wake, _flusher_loop = False, float("-inf"), float("-inf"), None, None


def flush_due(now: float | None = None) -> int:
    """Push, in this thread, what is due at ``now``; returns messages sent."""
    batch, _next_due = take_due(_clock() if now is None else now)
    return push(batch) if batch else 0


def flush() -> int:
    """Render and send every pending push now, in this thread; returns messages sent."""
    sent = 0
    for group, html in collect():
        sent += console_live.send_to_group(group, html)
    return sent

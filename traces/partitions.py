"""Time partitions of the span table on PostgreSQL.

``traces_span`` is partitioned by RANGE of ``run_id``, one partition per day:
the partition of day D holds run ids ``[D * RUN_IDS_PER_DAY, (D + 1) * RUN_IDS_PER_DAY)``
(D = days since 1970-01-01) and :func:`ensure_partitions` moves the run id
sequence to today's block once that day's partition exists. So the runs created
on one day, with every span they ever receive (late, duplicated or split), live
in one partition: duplicates stay caught by the plain unique (run_id, span_id)
index, and retention drops a whole day with one ``DROP TABLE`` instead of
deleting rows. Runs created before partitioning live in ``traces_span_legacy``.

Partitions are created a day ahead by the retention job; a late job costs
nothing but coarser retention, because ids keep coming from the last block.
"""

import re
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction

RUN_IDS_PER_DAY = 10**9
PARENT = "traces_span"
LEGACY = "traces_span_legacy"
_DAY_NAME = re.compile(r"^traces_span_(\d{8})$")
EPOCH_DAY = date(1970, 1, 1)


def day_index(day: date) -> int:
    return (day - EPOCH_DAY).days


def day_bounds(day: date) -> tuple[int, int]:
    index = day_index(day)
    return index * RUN_IDS_PER_DAY, (index + 1) * RUN_IDS_PER_DAY


def partition_name(day: date) -> str:
    return f"{PARENT}_{day:%Y%m%d}"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                    "WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace", [PARENT])
        return cur.fetchone() is not None


def list_partitions() -> list[tuple[str, date | None]]:
    """(name, day) of every partition; day is None for the legacy partition."""
    with connection.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname", [PARENT])
        names = [row[0] for row in cur.fetchall()]
    result = []
    for name in names:
        match = _DAY_NAME.match(name)
        result.append((name, datetime.strptime(match.group(1), "%Y%m%d").date() if match else None))
    return result


def _run_id_sequence(cur) -> str:
    cur.execute("SELECT pg_get_serial_sequence('traces_run', 'id')")
    return cur.fetchone()[0]


def ensure_partitions(*, now: datetime, days_ahead: int = 1) -> list[str]:
    """Create today's and the next days' partitions, then start today's run id block.

    Idempotent. The sequence only ever moves forward, and only after the
    partition for its new values is committed.
    """
    today = now.astimezone(UTC).date()
    created = []
    with transaction.atomic(), connection.cursor() as cur:
        existing = {name for name, _day in list_partitions()}
        cur.execute(f"SELECT last_value FROM {_run_id_sequence(cur)}")
        sequence_day = EPOCH_DAY + timedelta(days=cur.fetchone()[0] // RUN_IDS_PER_DAY)
        days = [today + timedelta(days=offset) for offset in range(days_ahead + 1)]
        if sequence_day > today + timedelta(days=days_ahead):
            days.append(sequence_day)  # ids already run in a later block (clock change, manual setval)
        for day in days:
            name = partition_name(day)
            if name in existing:
                continue
            lo, hi = day_bounds(day)
            cur.execute(f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF {PARENT} '
                        f"FOR VALUES FROM ({lo}) TO ({hi})")
            created.append(name)
    lo, _hi = day_bounds(today)
    with connection.cursor() as cur:
        sequence = _run_id_sequence(cur)
        cur.execute(f"SELECT last_value FROM {sequence}")
        if cur.fetchone()[0] < lo:
            cur.execute("SELECT setval(%s, %s, false)", [sequence, lo])
    return created


def drop_expired(*, now: datetime, retention_days: int) -> list[str]:
    """Drop day partitions whose runs are all older than the retention, and those runs.

    A partition of day D is dropped once D + 2 days is before ``now - retention``:
    one extra day covers runs created after midnight but before the job moved the
    id sequence. The legacy partition goes once none of its runs is recent.
    """
    from traces.models import Run

    cutoff = now - timedelta(days=retention_days)
    dropped = []
    for name, day in list_partitions():
        if day is not None:
            if datetime.combine(day + timedelta(days=2), datetime.min.time(), tzinfo=UTC) > cutoff:
                continue
            lo, hi = day_bounds(day)
        else:
            first_day = min((d for _n, d in list_partitions() if d is not None), default=None)
            hi = day_bounds(first_day)[0] if first_day else None
            if hi is None or Run.objects.filter(id__lt=hi, created_at__gte=cutoff).exists():
                continue
            lo = None
        _drop_partition(name)
        runs = Run.objects.filter(id__lt=hi) if lo is None else Run.objects.filter(id__gte=lo, id__lt=hi)
        _delete_runs(runs)
        dropped.append(name)
    return dropped


def _drop_partition(name: str) -> None:
    with connection.cursor() as cur:
        if connection.in_atomic_block:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks may point into it
            cur.execute(f'ALTER TABLE {PARENT} DETACH PARTITION "{name}"')
        else:
            # Does not block ingest into the other partitions while it waits.
            cur.execute(f'ALTER TABLE {PARENT} DETACH PARTITION "{name}" CONCURRENTLY')
        cur.execute(f'DROP TABLE "{name}"')


def _delete_runs(runs, batch_size: int = 1000) -> int:
    """Delete the runs (their spans are already gone) in batches; related rows follow Django's on_delete."""
    deleted = 0
    while True:
        ids = list(runs.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += runs.model.objects.filter(id__in=ids).delete()[0]

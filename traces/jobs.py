"""Periodic work of the traces app: plain idempotent functions taking ``now``."""

from datetime import datetime, timedelta

from django.conf import settings

from traces import partitions, redaction


def flush_redaction_counts(*, now: datetime) -> int:
    """Add the redactions counted in this process to the rules' ``hit_count``."""
    return redaction.flush_hit_counts()


def enforce_retention(*, now: datetime) -> int:
    """Remove spans and runs older than ``TRACE_RETENTION_DAYS``; idempotent.

    PostgreSQL: create the coming day partitions, then drop expired ones whole
    (returns partitions dropped). Elsewhere (SQLite): batched deletes of runs that
    started before the cutoff (returns spans deleted).
    """
    if partitions.is_partitioned():
        partitions.ensure_partitions(now=now)
        return len(partitions.drop_expired(now=now, retention_days=settings.TRACE_RETENTION_DAYS))
    return delete_expired(now=now)


def delete_expired(*, now: datetime, batch_size: int = 5000) -> int:
    """Delete runs that started before the retention window, their spans first, in batches."""
    from traces.models import Run, Span

    cutoff = now - timedelta(days=settings.TRACE_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(Run.objects.filter(started_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:200])
        if not ids:
            return deleted
        while True:
            span_ids = list(Span.objects.filter(run_id__in=ids).values_list("id", flat=True)[:batch_size])
            if not span_ids:
                break
            deleted += Span.objects.filter(run_id__in=ids, id__in=span_ids)._raw_delete(Span.objects.db)
        Run.objects.filter(id__in=ids).delete()

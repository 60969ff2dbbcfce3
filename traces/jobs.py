"""Periodic work of the traces app: plain idempotent functions taking ``now``."""

from datetime import datetime, timedelta

from django.conf import settings

from traces import redaction


def flush_redaction_counts(*, now: datetime) -> int:
    """Add the redactions counted in this process to the rules' ``hit_count``."""
    return redaction.flush_hit_counts()


def enforce_retention(*, now: datetime, batch_size: int = 5000) -> int:
    """Delete runs (and their spans) that ended before the retention window. Idempotent."""
    from traces.models import Run, Span

    cutoff = now - timedelta(days=settings.TRACE_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(Run.objects.filter(started_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:200])
        if not ids:
            break
        while True:
            span_ids = list(Span.objects.filter(run_id__in=ids).values_list("id", flat=True)[:batch_size])
            if not span_ids:
                break
            deleted += Span.objects.filter(id__in=span_ids)._raw_delete(Span.objects.db)
        Run.objects.filter(id__in=ids).delete()
    return deleted

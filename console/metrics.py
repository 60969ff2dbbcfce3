"""Prometheus metrics at ``GET /metrics``.

Two sources:
- counters and histograms observed in-process (ingest, decisions, websockets);
  multiprocess-safe when ``PROMETHEUS_MULTIPROC_DIR`` is set (``manage.py serve
  --workers N`` sets it), so one scrape sums every worker on the host;
- gauges read from the database at scrape time (queue depth, runs in flight,
  escalations, failed notifications, open incidents), which are right however
  many processes and hosts run the console. Apps register these with
  ``register_db_gauges(fn)``; ``fn()`` yields ``(name, help, labels, rows)`` or
  ``(name, help, labels, rows, "counter")`` for totals kept in tables.
"""

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

INGEST_REQUESTS = Counter("console_ingest_requests_total", "OTLP export requests by HTTP status",
                          ["status"])
INGEST_SPANS = Counter("console_ingest_spans_total", "Spans stored, by agent", ["agent"])
INGEST_REJECTED = Counter("console_ingest_rejected_spans_total", "Spans rejected at ingest, by reason",
                          ["reason"])
RUNS_STARTED = Counter("console_runs_started_total", "Runs first seen, by agent", ["agent"])
TOKENS = Counter("console_tokens_total", "LLM tokens, by agent, model and direction",
                 ["agent", "model", "direction"])
COST = Counter("console_cost_usd_total", "LLM cost in USD, by agent and model", ["agent", "model"])
DECISION_SECONDS = Histogram(
    "console_approval_time_to_decision_seconds", "From request to human decision",
    ["queue", "risk"], buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600))
APPROVAL_REQUESTS = Counter("console_approval_requests_total", "Approval requests by outcome at creation",
                            ["agent", "outcome"])
WEBSOCKETS = Gauge("console_websocket_connections", "Open live WebSocket connections",
                   multiprocess_mode="livesum")

_DB_GAUGES: list[Callable[[], Iterable[tuple]]] = []


def register_db_gauges(fn: Callable[[], Iterable[tuple]]) -> None:
    if fn not in _DB_GAUGES:
        _DB_GAUGES.append(fn)


class DatabaseCollector:
    """Gauges computed from the database when scraped. A failing source is skipped and logged."""

    def collect(self):
        for source in _DB_GAUGES:
            try:
                rows = list(source())
            except Exception:  # noqa: BLE001 - a broken source must not break the scrape
                log.warning("metrics source %s failed", getattr(source, "__name__", source), exc_info=True)
                continue
            for name, help_text, labels, values, *kind in rows:
                family_class = CounterMetricFamily if kind == ["counter"] else GaugeMetricFamily
                family = family_class(name, help_text, labels=labels)
                for label_values, value in values:
                    family.add_metric([str(v) for v in label_values], float(value))
                yield family


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if MULTIPROC:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    body = generate_latest(registry)
    db_registry = CollectorRegistry()
    db_registry.register(DatabaseCollector())
    body += generate_latest(db_registry)
    return body, CONTENT_TYPE_LATEST

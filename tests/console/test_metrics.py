import pytest

from console import metrics

pytestmark = pytest.mark.django_db


def test_metrics_are_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert "# TYPE console_ingest_spans_total counter" in body
    assert "# TYPE console_approval_time_to_decision_seconds histogram" in body


def test_metrics_bearer_protection(client, settings):
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


def test_database_gauges_appear_and_a_broken_source_is_skipped(client):
    def good():
        yield ("console_test_depth", "a test gauge", ["queue"], [(("payments",), 3)])

    def broken():
        raise RuntimeError("boom")

    metrics.register_db_gauges(good)
    metrics.register_db_gauges(broken)
    try:
        body = client.get("/metrics").content.decode()
    finally:
        metrics._DB_GAUGES.remove(good)
        metrics._DB_GAUGES.remove(broken)
    assert 'console_test_depth{queue="payments"} 3.0' in body


def _families(body: str) -> set[str]:
    return {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}


def test_metrics_after_known_activity(client, fixed_now):
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import ApprovalRequest, Delivery, EscalationFiring, Queue
    from tests import factories
    from traces.models import Run

    agent = factories.make_agent("metered-bot")
    Run.objects.create(trace_id="a" * 32, agent=agent, status="running")
    Run.objects.create(trace_id="b" * 32, agent=agent, status="ok")
    queue = Queue.objects.create(name="payments")
    now = timezone.now()
    common = {"agent": agent, "action": "refund", "arguments": {}, "arguments_digest": "0" * 64, "queue": queue}
    ApprovalRequest.objects.create(risk="high", status="pending", due_at=now + timedelta(minutes=30), **common)
    late = ApprovalRequest.objects.create(risk="high", status="pending", due_at=now - timedelta(minutes=1),
                                          breached_at=now, **common)
    ApprovalRequest.objects.create(risk="low", status="approved", due_at=now, **common)
    firing = EscalationFiring.objects.create(request=late, level=0, repeat=0, fired_at=now)
    Delivery.objects.create(request=late, firing=firing, channel="webhook", recipient="http://127.0.0.1:9/x",
                            title="t", status="failed", next_attempt_at=now)

    body = client.get("/metrics").content.decode()
    assert 'console_runs_in_flight{agent="metered-bot"} 1.0' in body
    assert 'console_approval_queue_depth{queue="payments",risk="high"} 2.0' in body
    assert 'risk="low"' not in body  # decided requests are not in the queue
    assert 'console_approval_overdue{queue="payments"} 1.0' in body
    assert 'console_sla_breaches_total{queue="payments"} 1.0' in body
    assert 'console_escalations_fired_total{queue="payments"} 1.0' in body
    assert 'console_notifications_failed_total{channel="webhook"} 1.0' in body


def test_open_incidents_are_counted_by_detector(client):
    from django.utils import timezone

    from tests import factories
    from traces.models import Incident

    agent = factories.make_agent("loopy-bot")
    for key, status in (("a", "open"), ("b", "acknowledged"), ("c", "resolved")):
        Incident.objects.create(kind="loop", dedupe_key=key, agent=agent, title="loop", status=status,
                                opened_at=timezone.now())
    body = client.get("/metrics").content.decode()
    assert 'console_incidents_open{agent="loopy-bot",detector="loop"} 2.0' in body


def test_every_metric_the_grafana_dashboard_uses_is_exposed(client):
    import json
    import re

    from django.conf import settings

    dashboard = json.loads((settings.BASE_DIR / "deploy" / "grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(console_[a-z_]+)", target["expr"]))
    body = client.get("/metrics").content.decode()
    exposed = _families(body)
    for name in used:
        base = re.sub(r"_(bucket|total|count|sum)$", "", name)
        assert name in exposed or base in exposed, f"{name} is on the dashboard but not in /metrics"

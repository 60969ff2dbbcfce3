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

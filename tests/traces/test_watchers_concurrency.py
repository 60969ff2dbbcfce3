"""Exactly-once firing with two workers on PostgreSQL."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from agents.models import Agent
from tests import factories
from tests.traces import helpers
from tests.traces.test_watchers_support import tool
from traces.incident_models import AgentHold, DetectorConfig, DetectorKind, Incident, IncidentAction
from traces.models import Run
from traces.watchers import detectors, services, stream
from traces.watchers.detectors import Finding

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_threads(fn, n=2):
    barrier = threading.Barrier(n)
    errors, results = [], []

    def work():
        try:
            barrier.wait(timeout=10)
            results.append(fn())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


def test_two_workers_open_one_incident_and_run_the_playbook_once(postgres_only, settings):
    settings.WATCHERS_MODE = "inline"
    agent = factories.make_agent("loopy")
    DetectorConfig.objects.create(kind=DetectorKind.LOOP, actions=["pause", "require_approval", "notify"])
    detectors.invalidate_cache()
    finding = Finding(kind=DetectorKind.LOOP, agent_id=agent.pk, dedupe_key="a:run:x", title="loop")
    results, errors = _in_threads(lambda: services.open_incident(finding=finding))
    assert errors == []
    assert sum(1 for r in results if r is not None) == 1
    assert Incident.objects.count() == 1
    assert IncidentAction.objects.count() == 3 and AgentHold.objects.count() == 1
    assert Agent.objects.get(pk=agent.pk).is_paused


def test_two_workers_checking_the_same_looping_run_fire_once(postgres_only, settings):
    settings.WATCHERS_MODE = "off"  # ingest without the hook; the two "workers" are the threads below
    detectors.invalidate_cache()
    agent = factories.make_agent("loopy")
    from traces import otlp, services as trace_services

    trace = helpers.new_trace_id()
    export = helpers.export_request(*[tool(trace, "lookup", {"id": 1}, parent=b"\x01" * 8) for _ in range(6)])
    decoded = otlp.decode(export, now=timezone.now(), max_future=timedelta(hours=1), text_limit=32 * 1024)
    trace_services.ingest_spans(agent=agent, spans=decoded.spans)
    run = Run.objects.get()
    results, errors = _in_threads(lambda: stream.process({run.pk: [(0, run.last_seq)]}))
    assert errors == []
    assert sum(len(r) for r in results) == 1
    assert Incident.objects.filter(kind=DetectorKind.LOOP).count() == 1
    assert IncidentAction.objects.filter(kind="pause").count() == 1

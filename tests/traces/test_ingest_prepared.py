"""Ingest's fixed statements are prepared once per database connection, not parsed and planned per batch.

Django turns psycopg's prepared statements off by default, which silently ignored ingest's
``execute(prepare=True)``: PostgreSQL parsed and planned the run upsert, the stored-spans read, the
run update and the key lookup for every request, a fifth of its CPU per span (bench/bench_ingest.py).
"""

import pytest
from django.db import connection

from tests.traces import helpers
from traces.models import Run

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_ingest_prepares_its_statements_once_and_reuses_them(client, agent_key):
    for _ in range(3):
        spans = helpers.record_agent_run()
        assert helpers.post(client, helpers.protobuf_body(spans), key=agent_key).status_code == 200
    assert Run.objects.count() == 3

    statements = _prepared_statements()
    upserts = [s for s in statements if "INSERT INTO traces_run" in s]
    stored_reads = [s for s in statements if "SELECT run_id, span_id FROM traces_span" in s]
    run_updates = [s for s in statements if "UPDATE traces_run AS r" in s]
    key_lookups = [s for s in statements if "agents_agentkey" in s and "revoked_at" in s]
    # One prepared statement each, used by all three requests (not one per request, not none).
    assert (len(upserts), len(stored_reads), len(run_updates), len(key_lookups)) == (1, 1, 1, 1), statements


def test_the_orm_keeps_unprepared_statements(client, agent_key):
    """Only what asks for it is prepared: ORM queries repeated many times stay unprepared."""
    for _ in range(20):
        Run.objects.filter(trace_id="0" * 32).exists()
    assert not [s for s in _prepared_statements() if "traces_run" in s and "LIMIT 1" in s]

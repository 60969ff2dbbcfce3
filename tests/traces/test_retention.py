from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from traces import jobs, partitions
from traces.models import Run, Span
from tests.traces import helpers

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_id_sequence_restored():
    """ensure_partitions moves the run id sequence forward, which no test rollback undoes.

    Restored over a separate connection, so it works even after a failed test.
    """
    import psycopg

    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}
    with psycopg.connect(**params, autocommit=True) as side:
        sequence = side.execute("SELECT pg_get_serial_sequence('traces_run', 'id')").fetchone()[0]
        last_value, is_called = side.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
    yield
    with psycopg.connect(**params, autocommit=True) as side:
        side.execute("SELECT setval(%s, %s, %s)", [sequence, last_value, is_called])


def _ingest_run(client, key, name="work"):
    trace = helpers.new_trace_id()
    spans = [helpers.make_span(trace, name=name), helpers.make_span(trace, name=name)]
    assert helpers.post(client, helpers.body_of(*spans), key=key).status_code == 200
    return Run.objects.get(trace_id=trace.hex())


def test_retention_is_registered_as_a_job(settings):
    assert settings.CONSOLE_JOBS["traces-retention"][0] == "traces.jobs.enforce_retention"
    assert settings.TRACE_RETENTION_DAYS == 30


@pytest.mark.postgres
def test_spans_table_is_partitioned_by_day_with_a_legacy_partition():
    assert partitions.is_partitioned()
    names = [name for name, _day in partitions.list_partitions()]
    assert partitions.LEGACY in names
    assert any(day is not None for _name, day in partitions.list_partitions())


@pytest.mark.postgres
def test_new_runs_land_in_todays_partition(client, agent_key, run_id_sequence_restored):
    now = timezone.now()
    partitions.ensure_partitions(now=now)
    run = _ingest_run(client, agent_key)
    lo, hi = partitions.day_bounds(now.date())
    assert lo <= run.pk < hi
    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT tableoid::regclass::text FROM traces_span WHERE run_id = %s", [run.pk])
        assert [row[0] for row in cur.fetchall()] == [partitions.partition_name(now.date())]


@pytest.mark.postgres
def test_expired_day_partitions_are_dropped_whole_and_recent_data_kept(client, agent_key, settings,
                                                                       run_id_sequence_restored):
    settings.TRACE_RETENTION_DAYS = 30
    now = timezone.now()
    partitions.ensure_partitions(now=now)
    old = _ingest_run(client, agent_key, name="old")
    today = partitions.partition_name(now.date())

    later = now + timedelta(days=33)
    assert jobs.enforce_retention(now=later) >= 1
    names = [name for name, _day in partitions.list_partitions()]
    assert today not in names
    assert partitions.partition_name(later.date()) in names
    assert partitions.partition_name(later.date() + timedelta(days=1)) in names  # created ahead
    assert not Run.objects.filter(pk=old.pk).exists()
    assert not Span.objects.filter(name="old").exists()

    recent = _ingest_run(client, agent_key, name="recent")  # ids now come from the new day's block
    assert recent.pk >= partitions.day_bounds(later.date())[0]
    assert jobs.enforce_retention(now=later) == 0  # idempotent
    assert Span.objects.filter(name="recent").count() == 2


@pytest.mark.postgres
def test_a_day_inside_the_window_is_kept(client, agent_key, run_id_sequence_restored):
    now = timezone.now()
    partitions.ensure_partitions(now=now)
    run = _ingest_run(client, agent_key)
    assert jobs.enforce_retention(now=now + timedelta(days=29)) == 0 or Run.objects.filter(pk=run.pk).exists()
    assert Run.objects.filter(pk=run.pk).exists()
    assert Span.objects.filter(run=run).count() == 2


def test_batched_delete_fallback_removes_old_runs_only(client, agent_key, settings):
    settings.TRACE_RETENTION_DAYS = 30
    old = _ingest_run(client, agent_key, name="old")
    new = _ingest_run(client, agent_key, name="new")
    Run.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=40))
    assert jobs.delete_expired(now=timezone.now(), batch_size=1) == 2
    assert not Run.objects.filter(pk=old.pk).exists()
    assert Run.objects.filter(pk=new.pk).exists() and Span.objects.filter(run=new).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ingest_creates_a_missing_partition_instead_of_failing(agent_key, run_id_sequence_restored):
    from django.test import Client

    ahead = timezone.now().date() + timedelta(days=5)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence('traces_run', 'id')")
        cur.execute("SELECT setval(%s, %s, false)", [cur.fetchone()[0], partitions.day_bounds(ahead)[0]])
    try:
        run = _ingest_run(Client(), agent_key)
        assert run.pk >= partitions.day_bounds(ahead)[0]
        assert Span.objects.filter(run=run).count() == 2
    finally:
        with connection.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS "{partitions.partition_name(ahead)}"')

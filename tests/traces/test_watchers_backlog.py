"""The background stream worker's memory stays bounded when it falls behind ingest.

Ingest hands each batch's inserted spans to the worker (its "facts"). A worker slowed down by a
burst of incidents used to hold every span stored meanwhile, and kept its last batch while idle.
"""

import gc
import threading
import weakref

import pytest
from django.db import IntegrityError, transaction

from traces.watchers import stream


class FakeSpan:
    """Stands in for an inserted SpanRecord: only its count and its lifetime matter here."""


def facts_for(run_id: int, spans: int, last_seq: int) -> dict:
    return {run_id: ({"id": run_id, "last_seq": last_seq}, [FakeSpan() for _ in range(spans)])}


def held_spans() -> int:
    return sum(len(held[1]) for held in stream._facts.values() if held is not None)


@pytest.fixture
def background(settings, monkeypatch):
    """The background worker with ``process`` replaced by ``calls``' stub; blocks until released."""
    settings.WATCHERS_MODE = "background"
    state = {"calls": [], "started": threading.Event(), "release": threading.Event()}

    def stub_process(batch, *, facts=None, now=None):
        state["calls"].append((sorted(batch), {run_id: len(held[1]) for run_id, held in (facts or {}).items()
                                               if held is not None}))
        state["started"].set()
        state["release"].wait(30)
        return []

    monkeypatch.setattr(stream, "process", stub_process)
    yield state
    state["release"].set()
    stream.drain(10)


def test_a_worker_behind_ingest_holds_at_most_facts_max_spans(background, monkeypatch):
    monkeypatch.setattr(stream, "FACTS_MAX_SPANS", 100)
    stream.enqueue([1], {1: (0, 10)}, facts_for(1, 10, 10))
    assert background["started"].wait(10)  # the worker is busy with run 1 (an incident storm, say)

    for run_id in range(2, 52):  # 50 more runs of 10 spans arrive meanwhile: 500 spans
        stream.enqueue([run_id], {run_id: (0, 10)}, facts_for(run_id, 10, 10))
    stream.enqueue([2], {2: (10, 20)}, facts_for(2, 10, 20))  # a run's next batch past the bound

    assert held_spans() <= 100
    assert stream._facts_spans == held_spans()
    assert sorted(stream._pending) == list(range(2, 52))  # every run is still checked ...
    assert stream._pending[2] == [(0, 10), (10, 20)]
    dropped = [run_id for run_id, held in stream._facts.items() if held is None]
    assert len(dropped) >= 40  # ... the ones past the bound from the database

    background["release"].set()
    assert stream.drain(10)
    batch, facts = background["calls"][-1]
    assert batch == list(range(2, 52))
    assert sum(facts.values()) <= 100
    assert stream._facts_spans == 0 and not stream._facts


def test_an_idle_worker_does_not_keep_its_last_batch(background):
    background["release"].set()
    facts = facts_for(7, 3, 3)
    span = weakref.ref(facts[7][1][0])
    stream.enqueue([7], {7: (0, 3)}, facts)
    del facts
    assert stream.drain(10) and background["calls"]
    gc.collect()
    assert span() is None


@pytest.mark.django_db(transaction=True)
def test_an_incident_already_open_does_not_keep_the_round_alive(settings, monkeypatch):
    """``open_incident`` meets the dedupe constraint (IntegrityError inside ``atomic``) for every
    anomaly already open; Django keeps that error, traceback and frames included, on the thread's
    connection."""
    settings.WATCHERS_MODE = "background"
    calls = []

    def process_meeting_an_open_incident(batch, *, facts=None, now=None):
        try:
            with transaction.atomic(), transaction.mark_for_rollback_on_error():
                raise IntegrityError('duplicate key value violates unique constraint "incident_once_per_anomaly"')
        except IntegrityError:
            pass
        calls.append(sorted(batch))
        return []

    monkeypatch.setattr(stream, "process", process_meeting_an_open_incident)
    facts = facts_for(8, 3, 3)
    span = weakref.ref(facts[8][1][0])
    stream.enqueue([8], {8: (0, 3)}, facts)
    del facts
    assert stream.drain(10) and calls == [[8]]
    gc.collect()
    assert span() is None

"""Synthetic span streams for the watcher tests (no tests here; imported by test_watchers_*)."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.traces import helpers
from traces.models import Run
from traces.watchers import baselines, detectors


@pytest.fixture
def watching(settings):
    """Stream detectors run inline, in the committing thread; caches start empty."""
    settings.WATCHERS_MODE = "inline"
    detectors.invalidate_cache()
    baselines.invalidate_cache()
    yield settings
    detectors.invalidate_cache()
    baselines.invalidate_cache()


def tool(trace, name, args, *, resource=None, attrs=None, start_ns=None, error=False, parent=b""):
    a = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
         "gen_ai.tool.call.arguments": json.dumps(args)}
    if resource:
        a["resource"] = resource
    a.update(attrs or {})
    return helpers.make_span(trace, name=f"execute_tool {name}", attrs=a, start_ns=start_ns, error=error,
                             parent=parent)


def step(trace, name="think", attrs=None, **kw):
    return helpers.make_span(trace, name=name, attrs=attrs, **kw)


def send(client, key, *spans):
    response = helpers.post(client, helpers.body_of(*spans), key=key)
    return response


def send_committed(client, key, capture, *spans):
    """POST and run the after-commit hooks (ingest's and the watchers')."""
    with capture(execute=True):
        response = send(client, key, *spans)
    return response


def make_history(agent, *, runs=40, cost=Decimal("0.010"), duration_ms=1000, errors=0, spread=0.1, now=None,
                 age=timedelta(hours=2)):
    """Finished runs in the agent's past, with normal variation (±spread), for baselines."""
    now = now or timezone.now()
    rows = []
    for i in range(runs):
        wobble = 1 + spread * ((i % 7) - 3) / 3
        started = now - age - timedelta(minutes=i)
        rows.append(Run(trace_id=f"{agent.pk:04x}{i:028x}", agent=agent, name="past", status="ok", root_ended=True,
                        started_at=started, ended_at=started + timedelta(milliseconds=duration_ms * wobble),
                        duration_ms=int(duration_ms * wobble), span_count=3, error_count=1 if i < errors else 0,
                        cost=cost * Decimal(str(round(wobble, 3)))))
    Run.objects.bulk_create(rows)
    return rows

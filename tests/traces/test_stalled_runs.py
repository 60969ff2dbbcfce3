"""A run still 'running' whose agent went silent (crashed, or the demo restarted) shows as Stalled.

Display only: the runs list and the run page say Stalled, with "No span since <time>" as the tooltip,
once the run has had no span for longer than the runaway detector's max_idle_seconds; the status in
the database and the API stays 'running' (DESIGN.md's statuses are unchanged).
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from traces.incident_models import DetectorConfig, DetectorKind
from traces.models import Run, RunStatus
from traces.watchers import detectors
from tests.traces.test_views import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_detector_settings():
    detectors.invalidate_cache()
    yield
    detectors.invalidate_cache()


def _running(agent, *, silent_for_s: float, **fields) -> Run:
    run = make_run(agent, status=RunStatus.RUNNING, root_ended=False, ended_at=None, duration_ms=None,
                   started_at=timezone.now() - timedelta(hours=1), **fields)
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(seconds=silent_for_s))
    run.refresh_from_db()
    return run


def _status_cell(html: str, run: Run) -> str:
    row = re.search(rf'<tr id="run-row-{run.pk}".*?</tr>', html, re.S)
    assert row, f"run {run.pk} is not on the page"
    return re.search(r'<td class="run-status">(.*?)</td>', row.group(0), re.S).group(1)


def test_a_running_run_silent_past_the_idle_limit_shows_stalled_with_its_last_span_time(reviewer_client, agent):
    abandoned = _running(agent, silent_for_s=601, task="abandoned")  # default max_idle_seconds: 600
    live = _running(agent, silent_for_s=5, task="live")
    html = reviewer_client.get("/runs/").content.decode()

    stalled = _status_cell(html, abandoned)
    assert ">Stalled<" in stalled and "Running" not in stalled
    assert f'title="No span since {timezone.localtime(abandoned.updated_at):%Y-%m-%d %H:%M:%S} UTC"' in stalled
    assert ">Running<" in _status_cell(html, live) and "Stalled" not in _status_cell(html, live)

    page = reviewer_client.get(f"/runs/{abandoned.trace_id}/").content.decode()
    assert ">Stalled<" in _status_cell(page, abandoned) and "No span since" in _status_cell(page, abandoned)


def test_stalled_is_display_only_the_api_and_the_status_filter_still_say_running(reviewer_client, agent,
                                                                               agent_headers, client):
    abandoned = _running(agent, silent_for_s=3600)
    assert Run.objects.get(pk=abandoned.pk).status == RunStatus.RUNNING
    body = client.get(f"/api/v1/runs/{abandoned.trace_id}", **agent_headers).json()
    assert body["status"] == "running"
    html = reviewer_client.get("/runs/?status=running").content.decode()
    assert ">Stalled<" in _status_cell(html, abandoned)


def test_the_idle_limit_is_the_runaway_detectors_setting_for_that_agent(reviewer_client, agent):
    DetectorConfig.objects.create(kind=DetectorKind.RUNAWAY, agent=agent, params={"max_idle_seconds": 60})
    quiet = _running(agent, silent_for_s=120)
    html = reviewer_client.get("/runs/").content.decode()
    assert ">Stalled<" in _status_cell(html, quiet)

    DetectorConfig.objects.filter(agent=agent).update(params={"max_idle_seconds": 7200})
    detectors.invalidate_cache()
    html = reviewer_client.get("/runs/").content.decode()
    assert ">Running<" in _status_cell(html, quiet)


def test_finished_and_waiting_runs_are_never_called_stalled(reviewer_client, agent):
    waiting = _running(agent, silent_for_s=3600, task="waits for a human")
    Run.objects.filter(pk=waiting.pk).update(status=RunStatus.WAITING)
    done = make_run(agent)
    Run.objects.filter(pk=done.pk).update(updated_at=timezone.now() - timedelta(days=1))
    html = reviewer_client.get("/runs/").content.decode()
    assert "Stalled" not in html
    assert "Waiting for approval" in _status_cell(html, waiting) and ">OK<" in _status_cell(html, done)

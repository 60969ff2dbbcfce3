"""A detector setting an Admin saves cannot break the runs pages, and a bad number is a clear 400.

The runs list and run page show a running run as Stalled after the runaway detector's
max_idle_seconds (Run.stalls_at, new with the Stalled display). The detector settings page stored any
JSON for params, so ``{"max_idle_seconds": "ten minutes"}`` (or 1e300, or -5) was saved, audited, and
from then on every page showing a running run answered 500 for everyone, and the runaway job failed
on each round. Numbers are now checked on save (400 naming the parameter); a value stored before
(or through the Django admin) falls back to the default for the display.
"""

import json
import uuid

import pytest
from django.utils import timezone

from console.models import AuditEntry
from traces.incident_models import DetectorConfig, DetectorKind
from traces.models import Run, RunStatus
from traces.watchers import detectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_run(agent) -> Run:
    return Run.objects.create(agent=agent, trace_id=uuid.uuid4().hex, name="invoke_agent billing-bot",
                              status=RunStatus.RUNNING, started_at=timezone.now())


@pytest.mark.parametrize("value", ["ten minutes", 1e300, -5, None, [600], True])
def test_a_bad_max_idle_seconds_is_refused_on_save(admin_client_, value):
    response = admin_client_.post("/incidents/detectors/", {
        "kind": DetectorKind.RUNAWAY, "agent": "", "enabled": "on", "actions": ["notify"],
        "params": json.dumps({"max_spans": 1000, "max_seconds": 1800, "max_idle_seconds": value})})
    assert response.status_code == 400
    assert "max_idle_seconds" in response.content.decode()
    assert not DetectorConfig.objects.exists()
    assert not AuditEntry.objects.filter(action="detector.configured").exists()


@pytest.mark.parametrize("value", ["ten minutes", 1e300, -5])
def test_a_bad_value_stored_earlier_does_not_break_the_runs_pages(reviewer_client, running_run, value):
    DetectorConfig.objects.create(kind=DetectorKind.RUNAWAY, agent=None, enabled=True,
                                  params={"max_idle_seconds": value}, actions=["notify"])
    detectors.invalidate_cache()
    listing = reviewer_client.get("/runs/")
    assert listing.status_code == 200
    assert f'id="run-row-{running_run.pk}"' in listing.content.decode()
    assert reviewer_client.get(f"/runs/{running_run.trace_id}/").status_code == 200


def test_a_good_value_is_saved_and_audited(admin_client_):
    response = admin_client_.post("/incidents/detectors/", {
        "kind": DetectorKind.RUNAWAY, "agent": "", "enabled": "on", "actions": ["notify"],
        "params": json.dumps({"max_spans": 1000, "max_seconds": 1800, "max_idle_seconds": 900})})
    assert response.status_code == 302
    assert DetectorConfig.objects.get().params["max_idle_seconds"] == 900
    assert AuditEntry.objects.filter(action="detector.configured").exists()


@pytest.mark.parametrize("value", ["ten minutes", 1e300, -5])
def test_a_bad_value_stored_earlier_leaves_the_detectors_working_on_the_default(running_run, value, caplog):
    """The runaway job (and every stream check) took int() of the stored value: each round failed, so no
    runaway run was ever caught while it stayed stored. The default stands in, with one warning."""
    from datetime import timedelta

    from traces.watchers import jobs

    DetectorConfig.objects.create(kind=DetectorKind.RUNAWAY, agent=None, enabled=True,
                                  params={"max_seconds": value, "max_idle_seconds": value}, actions=["notify"])
    detectors.invalidate_cache()
    getattr(detectors, "_warned_params", set()).clear()
    Run.objects.filter(pk=running_run.pk).update(started_at=timezone.now() - timedelta(hours=2))
    with caplog.at_level("WARNING", logger="traces.watchers.detectors"):
        findings = jobs.check_runaway_durations(now=timezone.now())
        jobs.check_runaway_durations(now=timezone.now())
    assert [f.run_id for f in findings] == [running_run.pk]  # 2 h > the default 30 min, active just now
    assert detectors.settings_for(DetectorKind.RUNAWAY, None).params["max_seconds"] == 1800
    warnings = [r.getMessage() for r in caplog.records if "using the default" in r.getMessage()]
    assert len(warnings) == 2 and any("max_seconds" in w for w in warnings)  # once per parameter, not per round

"""Demo settings for the watchers (``manage.py demo``): visible playbooks and a bar the demo can reach."""

from traces.incident_models import ActionKind as A
from traces.incident_models import AutonomyBar, DetectorConfig, DetectorKind as K

GLOBAL = {
    K.LOOP: ({"repeats": 5}, [A.NOTIFY, A.PAUSE]),
    K.RUN_COST: ({"k": 3.0, "min_runs": 10}, [A.NOTIFY, A.REQUIRE_APPROVAL]),
    K.CONFLICT: ({"window_s": 300}, [A.NOTIFY, A.REQUIRE_APPROVAL]),
    K.ERROR_RATE: ({}, [A.NOTIFY, A.ROLLBACK_PROMPT]),
    K.RUNAWAY: ({"max_spans": 500, "max_seconds": 900}, [A.NOTIFY, A.PAUSE]),
}


def seed(stdout) -> None:
    """Idempotent: rows an Admin has since edited are left alone."""
    made = 0
    for kind, (params, actions) in GLOBAL.items():
        _row, created = DetectorConfig.objects.get_or_create(kind=kind, agent=None,
                                                             defaults={"params": params, "actions": actions})
        made += created
    if not AutonomyBar.objects.exists():
        # Demo-sized: a well-behaved agent earns a proposal within a session of reviewing.
        AutonomyBar.objects.create(min_decisions=15, min_unedited_rate=0.95, no_rejections_in_last=10,
                                   incident_free_days=14)
    stdout.write(f"watchers: {made} detector settings, autonomy bar ready")

"""Demo settings for the watchers (``manage.py demo``): visible playbooks and a bar the demo can reach."""

from traces.incident_models import ActionKind as A
from traces.incident_models import AutonomyBar, DetectorConfig, DetectorKind as K
from traces.watchers import services

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
    _resume_demo_agents_paused_by_playbooks(stdout)


def _resume_demo_agents_paused_by_playbooks(stdout) -> None:
    """A restarted demo starts with its whole fleet working.

    A loop or runaway in an earlier session paused its agent, and the pause outlives the process:
    after a restart that agent sent nothing and the fleet looked dead. The pause is lifted (undone on
    its incident, audited, by system:demo); the incidents stay for their history; a pause a person
    made stays.
    """
    from agents.demo import DEMO_AGENTS
    from agents.models import Agent

    agent_ids = list(Agent.objects.filter(name__in=[name for name, _ in DEMO_AGENTS]).values_list("pk", flat=True))
    for action in services.lift_playbook_pauses(agent_ids=agent_ids, actor="system:demo"):
        stdout.write(f"watchers: resumed {action.incident.agent.name}, paused by incident #{action.incident_id} "
                     "in an earlier demo session (the incident stays open for its history)")

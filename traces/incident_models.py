"""Watchers: detector settings, per-agent baselines, incidents with the actions a playbook took,
holds on an agent's actions, and earned autonomy (auto-approve grants proposed from a track record).

Imported at the end of ``traces/models.py`` so the tables belong to the traces app.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

__all__ = [
    "DetectorKind", "ActionKind", "DetectorConfig", "AgentBaseline", "IncidentStatus", "Incident",
    "IncidentAction", "ActionState", "AgentHold", "ResourceTouch", "WatcherCursor", "AutonomyBar",
    "GrantStatus", "AutonomyGrant", "AutonomyEvent",
]


class DetectorKind(models.TextChoices):
    LOOP = "loop", "Loop"
    RUN_COST = "run_cost", "Run cost spike"
    BUDGET = "budget", "Spend over budget"
    LATENCY = "latency", "Latency regression"
    ERROR_RATE = "error_rate", "Error-rate regression"
    SCORE = "score", "Score threshold"
    RUNAWAY = "runaway", "Runaway run"
    CONFLICT = "conflict", "Conflict on a resource"


class ActionKind(models.TextChoices):
    NOTIFY = "notify", "Notify / page"
    REQUIRE_APPROVAL = "require_approval", "Require approval for every action"
    PAUSE = "pause", "Pause the agent"
    THROTTLE = "throttle", "Throttle the agent's keys"
    ROLLBACK_PROMPT = "rollback_prompt", "Roll the prompt label back"


class DetectorConfig(models.Model):
    """One detector's thresholds and playbook, globally (agent empty) or for one agent.

    ``params`` override the detector's defaults key by key; ``actions`` is the playbook
    (an incident is always opened). The per-agent row wins over the global one.
    """

    kind = models.CharField(max_length=20, choices=DetectorKind.choices)
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="detector_configs")
    enabled = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(null=True, blank=True, help_text="playbook action names; empty: the default")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "agent_id"]
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=Q(agent__isnull=True), name="detector_config_global"),
            models.UniqueConstraint(fields=["kind", "agent"], condition=Q(agent__isnull=False),
                                    name="detector_config_agent"),
        ]

    def __str__(self):
        return f"{self.kind} ({self.agent or 'all agents'})"


class AgentBaseline(models.Model):
    """Robust statistics of an agent's own recent finished runs, refreshed by a periodic job."""

    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, related_name="baseline")
    runs = models.IntegerField(default=0, help_text="finished runs the figures come from")
    cost_median = models.FloatField(default=0)
    cost_p99 = models.FloatField(default=0)
    duration_median_ms = models.FloatField(default=0)
    duration_mad_ms = models.FloatField(default=0)
    error_rate = models.FloatField(default=0)
    computed_at = models.DateTimeField()

    def __str__(self):
        return f"baseline of {self.agent_id}"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class IncidentQuerySet(models.QuerySet):
    def unresolved(self):
        return self.exclude(status=IncidentStatus.RESOLVED)


class Incident(models.Model):
    """One anomaly. The unique (kind, dedupe_key) is the ledger: a playbook fires once per anomaly."""

    kind = models.CharField(max_length=20, choices=DetectorKind.choices)
    dedupe_key = models.CharField(max_length=300)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="incidents")
    run = models.ForeignKey("traces.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    trace_id = models.CharField(max_length=32, blank=True)
    title = models.CharField(max_length=300)
    status = models.CharField(max_length=15, choices=IncidentStatus.choices, default=IncidentStatus.OPEN)
    evidence = models.JSONField(default=dict)
    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    resolution_note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "dedupe_key"], name="incident_once_per_anomaly"),
        ]
        indexes = [
            models.Index(fields=["status", "-id"], name="incident_status_id"),
            models.Index(fields=["agent", "-opened_at"], name="incident_agent_opened"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.title}"

    @property
    def url_path(self) -> str:
        return f"/incidents/{self.pk}/"

    @property
    def is_resolved(self) -> bool:
        return self.status == IncidentStatus.RESOLVED


class ActionState(models.TextChoices):
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Nothing to do"
    UNDONE = "undone", "Undone"


class IncidentAction(models.Model):
    """What a playbook did for an incident; ``detail`` keeps what undo needs (the value before)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    state = models.CharField(max_length=10, choices=ActionState.choices)
    detail = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "kind"], name="incident_action_once"),
        ]

    def __str__(self):
        return f"{self.kind} ({self.state}) for incident {self.incident_id}"

    @property
    def undoable(self) -> bool:
        return self.state == ActionState.DONE and self.kind != ActionKind.NOTIFY


class AgentHold(models.Model):
    """While uncleared, every approval request of the agent goes to a human."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="holds")
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="holds")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["agent"], condition=Q(cleared_at__isnull=True), name="agent_hold_active")]


class ResourceTouch(models.Model):
    """A tool span that named the resource it acted on (attribute ``resource``): conflict evidence."""

    resource = models.CharField(max_length=300)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    run_id = models.BigIntegerField()
    span_id = models.CharField(max_length=16)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["resource", "-at"], name="resource_touch_recent"),
                   models.Index(fields=["at"], name="resource_touch_at")]


class WatcherCursor(models.Model):
    """How far a periodic watcher has read an append-only table (e.g. decisions by id)."""

    name = models.CharField(max_length=50, unique=True)
    position = models.BigIntegerField(default=0)


class AutonomyBar(models.Model):
    """The bar an agent's record on one action must pass before auto-approval is proposed (one row)."""

    min_decisions = models.PositiveIntegerField(default=50)
    min_unedited_rate = models.FloatField(default=0.98, help_text="share approved without edits, 0-1")
    no_rejections_in_last = models.PositiveIntegerField(default=20)
    incident_free_days = models.PositiveIntegerField(default=14)
    lookback_days = models.PositiveIntegerField(default=90)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return "autonomy bar"


class GrantStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Auto-approved"
    DECLINED = "declined", "Declined"
    DEMOTED = "demoted", "Demoted"


class AutonomyGrant(models.Model):
    """Auto-approval of one agent's action (at one risk) through a guardian rule, once an Admin ratifies it."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="autonomy_grants")
    action = models.CharField(max_length=200)
    risk = models.CharField(max_length=10)
    status = models.CharField(max_length=10, choices=GrantStatus.choices, default=GrantStatus.PROPOSED)
    rule = models.ForeignKey("approvals.GuardianRule", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    evidence = models.JSONField(default=dict)
    proposed_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    demoted_at = models.DateTimeField(null=True, blank=True)
    demoted_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["agent_id", "action", "risk", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "action", "risk"],
                                    condition=Q(status__in=["proposed", "active"]), name="autonomy_grant_one_open"),
        ]

    def __str__(self):
        return f"{self.action} ({self.risk}) for agent {self.agent_id}: {self.status}"


class AutonomyEvent(models.Model):
    grant = models.ForeignKey(AutonomyGrant, on_delete=models.CASCADE, related_name="events")
    event = models.CharField(max_length=20)
    actor = models.CharField(max_length=200)
    note = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]

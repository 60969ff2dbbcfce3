"""Approvals: guardian rules, queues, SLA policies, escalation matrices, requests,
decisions, the escalation ledger and the notification outbox.

Writes live in ``approvals.services``; models keep fields, constraints,
choices, single-row properties and reusable filters.
"""

import hashlib
import json
import re
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from console.linear_regex import UnsupportedPattern, compile_linear
from console.roles import Role, has_role


class Risk(models.TextChoices):
    LOW = "low", "low"
    MEDIUM = "medium", "medium"
    HIGH = "high", "high"
    CRITICAL = "critical", "critical"


RISK_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}

# SLA minutes when a queue has no policy for a risk.
DEFAULT_SLA_MINUTES = {Risk.CRITICAL: 10, Risk.HIGH: 30, Risk.MEDIUM: 240, Risk.LOW: 1440}


class Status(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    EXPIRED = "expired", "expired"

    @classmethod
    def from_verdict(cls, verdict: str) -> "Status":
        return cls.REJECTED if verdict == Verdict.REJECT else cls.APPROVED


class Verdict(models.TextChoices):
    APPROVE = "approve", "approve"
    REJECT = "reject", "reject"
    MODIFY = "modify", "approve with edits"


class ReasonCategory(models.TextChoices):
    OK = "ok", "looks right"
    POLICY = "policy", "against policy"
    WRONG_ARGUMENTS = "wrong_arguments", "wrong arguments"
    WRONG_ACTION = "wrong_action", "wrong action"
    RISK = "risk", "too risky"
    NEEDS_INFO = "needs_info", "needs more information"
    OTHER = "other", "other"


class BreachAction(models.TextChoices):
    KEEP_PENDING_AND_PAGE = "keep_pending_and_page", "keep pending and page"
    EXPIRE_REJECTED = "expire_rejected", "expire as rejected"


class Outcome(models.TextChoices):
    ALLOW = "allow", "allow"
    DENY = "deny", "deny"
    ASK = "ask", "ask a human"


class ConflictRule(models.TextChoices):
    """How a queue arbitrates two pending or running actions on the same ``resource``."""

    ASK_HUMAN = "ask_human", "ask a human"
    FIRST_WINS = "first_wins", "first wins (reject the later one)"
    HIGHER_RISK_WAITS = "higher_risk_waits", "higher risk waits"


class ConflictState(models.TextChoices):
    HELD = "held", "held for a reviewer"
    WAITING = "waiting", "waiting for the other to finish"
    RESOLVED = "resolved", "resolved"


CONFLICT_WAITING_STATES = (ConflictState.HELD, ConflictState.WAITING)


class Arbitration(models.TextChoices):
    """How a conflict was (or is being) arbitrated, by a rule or a reviewer."""

    FIRST_WINS = "first_wins", "rejected: the first one wins"
    HIGHER_RISK_WAITS = "higher_risk_waits", "waits: higher risk waits"
    LOWER_RISK_FIRST = "lower_risk_first", "went first: lower risk goes first"
    YIELDED = "yielded", "waits: the other was let go first"
    THIS_FIRST = "this_first", "a reviewer let this one go first"
    OTHER_FIRST = "other_first", "a reviewer let the other go first"
    REJECTED = "rejected", "a reviewer rejected it"
    RELEASED = "released", "released: the other finished"


class WebhookFormat(models.TextChoices):
    GENERIC = "generic", "generic JSON"
    SLACK = "slack", "Slack-compatible"


def canonical_json(value) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_digest(action: str, arguments) -> str:
    """sha256 hex of the canonical JSON of ``{"action": ..., "arguments": ...}``."""
    return hashlib.sha256(canonical_json({"action": action, "arguments": arguments}).encode()).hexdigest()


# --- queues and policies ------------------------------------------------------------


class Queue(models.Model):
    """A named queue of approval requests; its members are its reviewers."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="approval_queues")
    created_at = models.DateTimeField(auto_now_add=True)
    # Issue 5 (conflicts): how a later request on a busy resource is arbitrated.
    conflict_rule = models.CharField(max_length=20, choices=ConflictRule.choices, default=ConflictRule.ASK_HUMAN,
                                     help_text="when a request's resource already has a pending or running action")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SlaPolicy(models.Model):
    """Minutes to decide a request of ``risk`` in ``queue``."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="sla_policies")
    risk = models.CharField(max_length=10, choices=Risk.choices)
    minutes = models.PositiveIntegerField()
    # Issue 5 (four eyes): a policy may require two reviewers.
    required_approvals = models.PositiveSmallIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue", "risk"], name="sla_policy_queue_risk_unique"),
            models.CheckConstraint(condition=Q(minutes__gte=1), name="sla_policy_minutes_positive"),
        ]

    def __str__(self):
        return f"{self.queue}: {self.risk} in {self.minutes} min"


def sla_minutes(queue_id: int | None, risk: str) -> int:
    if queue_id is not None:
        minutes = SlaPolicy.objects.filter(queue_id=queue_id, risk=risk).values_list("minutes", flat=True).first()
        if minutes:
            return minutes
    return DEFAULT_SLA_MINUTES[Risk(risk)]


class EscalationMatrix(models.Model):
    """Ordered escalation levels of a queue, and what happens when the SLA is breached."""

    queue = models.OneToOneField(Queue, on_delete=models.CASCADE, related_name="escalation_matrix")
    breach_action = models.CharField(max_length=30, choices=BreachAction.choices,
                                     default=BreachAction.KEEP_PENDING_AND_PAGE)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    def __str__(self):
        return f"escalation of {self.queue}"

    def snapshot(self) -> dict:
        """What a request keeps: an edit of the matrix never changes it in flight."""
        levels = self.levels.order_by("order", "id").prefetch_related("users", "groups")
        return {
            "matrix_id": self.pk,
            "breach_action": self.breach_action,
            "levels": [level.snapshot() for level in levels],
        }


class EscalationLevel(models.Model):
    """Fires ``after_minutes`` without claim or decision, then ``repeat_count`` more times."""

    matrix = models.ForeignKey(EscalationMatrix, on_delete=models.CASCADE, related_name="levels")
    order = models.PositiveSmallIntegerField(default=0)
    after_minutes = models.PositiveIntegerField(
        help_text="minutes since the request arrived (or its claim expired) before this level fires")
    repeat_count = models.PositiveSmallIntegerField(default=0, help_text="extra firings after the first")
    repeat_interval_minutes = models.PositiveIntegerField(default=10)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    notify_queue_reviewers = models.BooleanField(default=False)
    email = models.BooleanField(default=True, help_text="also e-mail the users (in-app always)")
    webhook_url = models.URLField(blank=True, max_length=500)
    webhook_format = models.CharField(max_length=10, choices=WebhookFormat.choices, default=WebhookFormat.GENERIC)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self):
        return f"level {self.order} after {self.after_minutes} min"

    def has_recipients(self) -> bool:
        return bool(self.notify_queue_reviewers or self.webhook_url or
                    (self.pk and (self.users.exists() or self.groups.exists())))

    def snapshot(self) -> dict:
        return {
            "order": self.order,
            "after_minutes": self.after_minutes,
            "repeat_count": self.repeat_count,
            "repeat_interval_minutes": self.repeat_interval_minutes,
            "user_ids": sorted(u.pk for u in self.users.all()),
            "group_ids": sorted(g.pk for g in self.groups.all()),
            "queue_reviewers": self.notify_queue_reviewers,
            "email": self.email,
            "webhook_url": self.webhook_url,
            "webhook_format": self.webhook_format,
        }


# With no matrix, a queue's reviewers hear of a request at once and again at the SLA breach.
DEFAULT_MATRIX_SNAPSHOT = {
    "matrix_id": None,
    "breach_action": BreachAction.KEEP_PENDING_AND_PAGE.value,
    "levels": [{"order": 0, "after_minutes": 0, "repeat_count": 0, "repeat_interval_minutes": 10,
                "user_ids": [], "group_ids": [], "queue_reviewers": True, "email": False,
                "webhook_url": "", "webhook_format": WebhookFormat.GENERIC.value}],
}


def escalation_steps(snapshot: dict) -> list[tuple[int, int, int]]:
    """Every firing of a matrix snapshot as (minutes after start, level index, repeat), in time order."""
    steps = []
    for index, level in enumerate(snapshot.get("levels", [])):
        for repeat in range(int(level.get("repeat_count", 0)) + 1):
            offset = int(level["after_minutes"]) + repeat * int(level.get("repeat_interval_minutes", 0))
            steps.append((offset, index, repeat))
    steps.sort()
    return steps


# --- guardian rules ---------------------------------------------------------------------

CONDITION_OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "contains", "matches")
MAX_PATTERN_LENGTH = 200


def validate_conditions(conditions) -> None:
    """Raise ValidationError with a reason naming the bad condition."""
    if conditions in (None, ""):
        return
    if not isinstance(conditions, list):
        raise ValidationError({"conditions": "Conditions must be a list of {field, op, value} objects."})
    for number, cond in enumerate(conditions, start=1):
        where = f"Condition {number}"
        if not isinstance(cond, dict) or set(cond) - {"field", "op", "value"} or not {"field", "op", "value"} <= set(cond):
            raise ValidationError({"conditions": f"{where} must be an object with exactly field, op and value."})
        field, op, value = cond.get("field"), cond.get("op"), cond.get("value")
        if not isinstance(field, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", field):
            raise ValidationError({"conditions": f"{where}: field must be an argument name like amount or "
                                                 f"customer.country, got {field!r}."})
        if op not in CONDITION_OPS:
            raise ValidationError({"conditions": f"{where}: unknown operator {op!r}; use one of "
                                                 + ", ".join(CONDITION_OPS) + "."})
        if op in ("in", "not in") and not isinstance(value, list):
            raise ValidationError({"conditions": f"{where}: {op!r} needs a list value, e.g. [\"a\", \"b\"]."})
        if op in (">", ">=", "<", "<=") and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
            raise ValidationError({"conditions": f"{where}: {op!r} needs a number or a string value."})
        if op == "matches":
            if not isinstance(value, str) or len(value) > MAX_PATTERN_LENGTH:
                raise ValidationError({"conditions": f"{where}: 'matches' needs a regular expression of at most "
                                                     f"{MAX_PATTERN_LENGTH} characters."})
            try:
                compile_linear(value)
            except UnsupportedPattern as exc:
                raise ValidationError({"conditions": f"{where}: invalid regular expression: {exc}."}) from exc


class GuardianRule(models.Model):
    """Matches an action and says allow, deny or ask a human in a queue. Evaluated in ``order``."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True)
    order = models.IntegerField(default=100)
    enabled = models.BooleanField(default=True)
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="guardian_rules", help_text="empty: any agent")
    action_pattern = models.CharField(max_length=200, default="*", help_text="glob, e.g. refunds.* or deploy")
    risks = models.JSONField(null=True, blank=True, help_text='list of risks, e.g. ["high", "critical"]; empty: any')
    conditions = models.JSONField(default=list, blank=True,
                                  help_text='e.g. [{"field": "amount", "op": ">", "value": 500}]')
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="rules")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(required_approvals__in=[1, 2]),
                                   name="guardian_rule_required_approvals_1_or_2"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if not (self.action_pattern or "").strip():
            raise ValidationError({"action_pattern": "Give an action pattern; * matches every action."})
        if self.risks in ("", []):
            self.risks = None
        if self.risks is not None:
            if not isinstance(self.risks, list) or any(r not in Risk.values for r in self.risks):
                raise ValidationError({"risks": "Risks must be a list of " + ", ".join(Risk.values) + "."})
        if self.conditions in (None, ""):
            self.conditions = []
        validate_conditions(self.conditions)
        if self.outcome == Outcome.ASK and self.queue_id is None:
            raise ValidationError({"queue": "A rule that asks a human must name the queue."})
        if self.required_approvals not in (1, 2):
            raise ValidationError({"required_approvals": "One or two approvals."})

    def save(self, *args, **kwargs):
        # A bad rule never reaches the table, whoever saves it.
        self.full_clean()
        super().save(*args, **kwargs)


# --- requests ----------------------------------------------------------------------------


class ApprovalRequestQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=Status.PENDING)

    def due_before(self, t):
        return self.filter(status=Status.PENDING, due_at__lt=t)

    def visible_to(self, user):
        """Operators and Admins see every queue; reviewers their own queues."""
        if has_role(user, Role.OPERATOR):
            return self
        if has_role(user, Role.REVIEWER):
            return self.filter(queue__members=user)
        return self.none()

    def decidable_by(self, user):
        """Pending requests ``user`` may decide: members of the queue holding Reviewer, or Admins."""
        qs = self.filter(status=Status.PENDING)
        if has_role(user, Role.ADMIN):
            return qs
        if has_role(user, Role.REVIEWER):
            return qs.filter(queue__members=user)
        return qs.none()


class ApprovalRequest(models.Model):
    """An agent's ask to act. ``status`` changes once, by a conditional UPDATE."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="approval_requests")
    action = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    arguments_digest = models.CharField(max_length=64)
    summary = models.TextField(blank=True)
    risk = models.CharField(max_length=10, choices=Risk.choices)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    span_id = models.CharField(max_length=32, blank=True)
    resource = models.CharField(max_length=300, blank=True)
    prompt_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    context = models.JSONField(null=True, blank=True)
    timeout_s = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="created_at + timeout_s")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=500, blank=True, help_text="why it was decided (rule, pause, timeout...)")
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="requests")
    matched_rule = models.ForeignKey(GuardianRule, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="requests")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    due_at = models.DateTimeField(null=True, blank=True)

    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    claimed_until = models.DateTimeField(null=True, blank=True)

    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decider = models.CharField(max_length=200, blank=True,
                               help_text="who decided: a username, rule:<name>, or system:<why>")
    decided_at = models.DateTimeField(null=True, blank=True)
    final_arguments = models.JSONField(null=True, blank=True, help_text="the approved (or edited) arguments")
    final_digest = models.CharField(max_length=64, blank=True)

    # Escalation: the matrix as it was at creation; a cursor into its steps.
    escalation_snapshot = models.JSONField(default=dict)
    breach_action = models.CharField(max_length=30, choices=BreachAction.choices,
                                     default=BreachAction.KEEP_PENDING_AND_PAGE)
    escalation_epoch = models.PositiveIntegerField(default=0, help_text="+1 each time escalation restarts")
    escalation_started_at = models.DateTimeField(null=True, blank=True)
    escalation_step = models.PositiveIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    executed_at = models.DateTimeField(null=True, blank=True)
    execution_result = models.JSONField(null=True, blank=True)
    execution_error = models.TextField(blank=True)

    # Issue 5 (conflicts): the request this one conflicts with, and how that is arbitrated.
    conflict_with = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    conflict_state = models.CharField(max_length=10, choices=ConflictState.choices, blank=True)
    conflict_rule = models.CharField(max_length=20, choices=ConflictRule.choices, blank=True)
    arbitration = models.CharField(max_length=20, choices=Arbitration.choices, blank=True)
    arbitrated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    arbitrated_at = models.DateTimeField(null=True, blank=True)
    arbitration_reason = models.CharField(max_length=500, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "idempotency_key"], name="approval_agent_idempotency_unique"),
        ]
        indexes = [
            # The sweeps read only pending rows through these partial indexes.
            models.Index(fields=["next_escalation_at"], condition=Q(status="pending"),
                         name="approval_pending_next_esc"),
            models.Index(fields=["due_at"], condition=Q(status="pending"), name="approval_pending_due"),
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="approval_pending_expires"),
            models.Index(fields=["claimed_until"], condition=Q(status="pending"), name="approval_pending_claim"),
            models.Index(fields=["queue", "due_at"], condition=Q(status="pending"), name="approval_queue_due"),
            models.Index(fields=["resource"], condition=Q(status="pending"), name="approval_pending_resource"),
            models.Index(fields=["resource"], condition=Q(status="approved", executed_at__isnull=True),
                         name="approval_running_resource"),
            models.Index(fields=["conflict_with"], condition=Q(status="pending", conflict_state__in=["held", "waiting"]),
                         name="approval_conflict_waiting"),
            models.Index(fields=["agent", "-id"], name="approval_agent_recent"),
            # APPROVALS_MAX_PENDING_PER_AGENT counts an agent's pending requests on every create.
            models.Index(fields=["agent"], condition=Q(status="pending"), name="approval_agent_pending"),
            models.Index(fields=["queue", "decided_at"], name="approval_queue_decided"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.action} ({self.risk}, {self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == Status.PENDING

    @property
    def is_overdue(self) -> bool:
        return self.is_pending and self.due_at is not None and self.due_at <= timezone.now()

    @property
    def time_left(self) -> timedelta | None:
        return None if self.due_at is None else self.due_at - timezone.now()

    @property
    def claim_active(self) -> bool:
        return self.claimed_by_id is not None and self.claimed_until is not None and self.claimed_until > timezone.now()

    @property
    def url_path(self) -> str:
        return f"/approvals/{self.pk}/"

    @property
    def is_held(self) -> bool:
        """Pending and held back by a conflict (for a reviewer, or until the other finishes)."""
        return self.is_pending and self.conflict_state in CONFLICT_WAITING_STATES

    @property
    def conflict_shown_state(self) -> str:
        """held / waiting / resolved, or "" without a conflict; a decided request's conflict is resolved."""
        if not self.conflict_state:
            return ""
        return self.conflict_state if self.is_held else ConflictState.RESOLVED

    def get_arbitration_display(self) -> str:
        """The arbitration in words, true for this pair: under "higher risk waits" a tie or a lower-risk
        request also waits (the later one, or the other was already decided or being decided)."""
        label = Arbitration(self.arbitration).label if self.arbitration in Arbitration.values else self.arbitration
        other = self.conflict_with
        if self.arbitration != Arbitration.HIGHER_RISK_WAITS or other is None:
            return label
        mine, theirs = RISK_RANK.get(self.risk), RISK_RANK.get(other.risk)
        if mine is None or theirs is None or mine > theirs:
            return label
        if mine == theirs:
            return f"waits: both are {self.get_risk_display()} risk, so the later one waits"
        return "waits: the other was already decided or being decided, so it finishes first"

    @property
    def answer_arguments(self):
        """What the agent may run: the edited arguments when there are any."""
        if self.status != Status.APPROVED:
            return None
        return self.final_arguments if self.final_arguments is not None else self.arguments

    @property
    def answer_digest(self) -> str:
        return self.final_digest or self.arguments_digest


class Decision(models.Model):
    """A reviewer's verdict. One per request today; issue 5 allows two for four eyes."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    reason_category = models.CharField(max_length=30, choices=ReasonCategory.choices, blank=True)
    reason = models.TextField(blank=True)
    arguments = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "reviewer"], name="decision_one_per_reviewer"),
        ]

    def __str__(self):
        return f"{self.verdict} on #{self.request_id}"


class EscalationFiring(models.Model):
    """The exactly-once ledger: one row per (request, epoch, level, repeat) ever fired.

    ``level`` -1 is the SLA breach page. ``epoch`` grows when a claim expires
    and escalation restarts, so the restarted levels can fire again.
    """

    BREACH_LEVEL = -1

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="firings")
    epoch = models.PositiveIntegerField(default=0)
    level = models.IntegerField()
    repeat = models.PositiveIntegerField(default=0)
    fired_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "epoch", "level", "repeat"], name="escalation_firing_once"),
        ]

    def __str__(self):
        return f"#{self.request_id} level {self.level} repeat {self.repeat}"


class Channel(models.TextChoices):
    IN_APP = "in_app", "in-app"
    EMAIL = "email", "e-mail"
    WEBHOOK = "webhook", "webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class DeliveryQuerySet(models.QuerySet):
    def due(self, now):
        return self.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


class Delivery(models.Model):
    """One notification to one recipient on one channel: the outbox row the delivery job sends."""

    request = models.ForeignKey(ApprovalRequest, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="deliveries")
    firing = models.ForeignKey(EscalationFiring, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="approval_notifications")
    recipient = models.CharField(max_length=500, help_text="username, e-mail address or webhook URL")
    webhook_format = models.CharField(max_length=10, choices=WebhookFormat.choices, blank=True)
    title = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_pending_next"),
            models.Index(fields=["user", "-id"], condition=Q(channel="in_app"), name="delivery_inbox"),
        ]

    def __str__(self):
        return f"{self.channel} to {self.recipient}: {self.title}"


class DeliveryAttempt(models.Model):
    """Each try of a delivery, successful or not."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]

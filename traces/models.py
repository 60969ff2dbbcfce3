"""Runs (one per trace), their spans, the model price table and redaction rules.

Ingest writes spans in bulk (``traces.ingest``); a run's aggregates are kept
correct by adding only the spans a batch really inserted, under the run's row
lock, so order of arrival and duplicates do not matter.
"""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    ERROR = "error", "Error"
    WAITING = "waiting", "Waiting for approval"


class SpanKind(models.TextChoices):
    AGENT = "agent", "Agent"
    LLM = "llm", "LLM"
    TOOL = "tool", "Tool"
    RETRIEVER = "retriever", "Retriever"
    DECISION = "decision", "Decision"
    STATE = "state", "State"
    OTHER = "other", "Other"


class SpanStatus(models.TextChoices):
    UNSET = "unset", "Unset"
    OK = "ok", "OK"
    ERROR = "error", "Error"


def run_status(*, root_ended: bool, error_count: int, waiting: bool) -> str:
    """The one rule for a run's status; depends only on order-free facts."""
    if root_ended:
        return RunStatus.ERROR if error_count else RunStatus.OK
    return RunStatus.WAITING if waiting else RunStatus.RUNNING


class RunQuerySet(models.QuerySet):
    def for_agent(self, agent):
        return self.filter(agent=agent)

    def with_errors(self):
        return self.filter(error_count__gt=0)


class Run(models.Model):
    """One trace. Aggregates are sums over its stored spans (see module doc)."""

    trace_id = models.CharField(max_length=32, unique=True, help_text="32 lowercase hex characters")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="runs",
                              db_index=False)  # covered by the (agent, -id) index
    name = models.CharField(max_length=300, blank=True, help_text="the root span's name")
    task = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    root_ended = models.BooleanField(default=False, help_text="a root span (no parent) has arrived")
    has_pending_approval = models.BooleanField(default=False)
    session_id = models.CharField(max_length=200, blank=True)
    service_name = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    span_count = models.IntegerField(default=0)
    error_count = models.IntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    prompt_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    last_seq = models.BigIntegerField(default=0, help_text="highest span seq handed out (live cursors)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["agent", "-id"], name="run_agent_id"),
            models.Index(fields=["status", "-id"], name="run_status_id"),
            models.Index(fields=["-started_at"], name="run_started"),
            models.Index(fields=["agent", "-started_at"], name="run_agent_started"),
            models.Index(fields=["prompt_name", "prompt_version"], name="run_prompt"),
            models.Index(fields=["session_id"], name="run_session"),
        ]

    def __str__(self):
        return f"{self.trace_id} ({self.name or 'run'})"

    @property
    def stalls_at(self):
        """When a ``running`` run counts as stalled if no span arrives before: its last activity
        (``updated_at``, written by every ingest) plus the runaway detector's ``max_idle_seconds``,
        the silence after which that detector calls a run abandoned. None for other statuses."""
        from traces.incident_models import DetectorKind
        from traces.watchers import detectors  # the watchers import this module

        if self.status != RunStatus.RUNNING or self.updated_at is None:
            return None
        # settings_for puts the default in place of a value stored unchecked (Django admin, an older version)
        max_idle_s = detectors.settings_for(DetectorKind.RUNAWAY, self.agent_id).params["max_idle_seconds"]
        return self.updated_at + timedelta(seconds=int(max_idle_s))

    @property
    def stalled_since(self):
        """For display only: the last activity of a run that has stalled (its agent crashed, or the
        demo was restarted, and it will never finish), else None. The status stays ``running``."""
        stalls_at = self.stalls_at
        return self.updated_at if stalls_at is not None and timezone.now() > stalls_at else None


class Span(models.Model):
    """One span. Unique per (run, span_id): a resent span is stored once.

    Text columns are redacted and size-limited before they are written.
    """

    # No database constraint: PostgreSQL checked it with a row lock on the run for every span stored
    # (~10 µs of its CPU per span at ingest). Ingest writes a span only after its run, under the run's
    # lock; runs are deleted through the ORM (which cascades) or after their spans' partition is dropped.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="spans", db_constraint=False,
                            db_index=False)  # covered by the unique (run, span_id) index
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=300)
    kind = models.CharField(max_length=10, choices=SpanKind.choices, default=SpanKind.OTHER)
    status = models.CharField(max_length=5, choices=SpanStatus.choices, default=SpanStatus.UNSET)
    status_message = models.CharField(max_length=1000, blank=True)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    operation = models.CharField(max_length=50, blank=True, help_text="gen_ai.operation.name")
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    tool_name = models.CharField(max_length=200, blank=True)
    tool_arguments = models.JSONField(null=True, blank=True)
    input_text = models.TextField(blank=True)
    output_text = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    links = models.JSONField(default=list, blank=True)
    prompt_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    redaction_count = models.IntegerField(default=0)
    seq = models.BigIntegerField(default=0, help_text="arrival order within the run, for live cursors")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["start_time", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "span_id"], name="span_run_span_id_unique"),
        ]
        indexes = [
            models.Index(fields=["run", "seq"], name="span_run_seq"),
            models.Index(fields=["start_time"], name="span_start"),
        ]

    def __str__(self):
        return f"{self.name} ({self.span_id})"

    @property
    def is_error(self) -> bool:
        return self.status == SpanStatus.ERROR


class ModelPrice(models.Model):
    """Price per million tokens. ``model`` matches exactly, else as the longest prefix."""

    model = models.CharField(max_length=200, unique=True,
                             help_text="e.g. gpt-4o; also matches gpt-4o-2024-08-06 when no exact row exists")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self):
        return self.model


class RedactionRule(models.Model):
    """A pattern replaced in span content before storage.

    Built-in rules are always applied (``enabled`` does not switch them off);
    ``hit_count`` is a running total, flushed shortly after ingest.
    """

    name = models.CharField(max_length=100, unique=True)
    pattern = models.TextField(help_text="a Python regular expression")
    replacement = models.CharField(max_length=100, default="[REDACTED]")
    enabled = models.BooleanField(default=True)
    builtin = models.BooleanField(default=False, editable=False)
    hit_count = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-builtin", "name"]

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        from console.linear_regex import UnsupportedPattern, compile_linear

        if self.builtin:
            return
        try:
            compile_linear(self.pattern)  # admin rules run on RE2: linear time on agent-sent text
        except UnsupportedPattern as exc:
            raise ValidationError({"pattern": f"Not a regular expression the console can run: {exc}"}) from exc


def max_text_chars() -> int:
    return getattr(settings, "TRACE_MAX_TEXT_CHARS", 32 * 1024)

from traces.incident_models import *  # noqa: E402,F401,F403 - watchers tables (traces/watchers), kept in their own module

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class Agent(models.Model):
    """An AI agent known to the console. Its keys act only on its own data."""

    name = models.SlugField(max_length=100, unique=True, help_text="letters, digits, - and _",
                            error_messages={"unique": "An agent with this name already exists."})
    description = models.CharField(max_length=500, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="owned_agents")
    is_paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="agent_name_ci_unique",
                                    violation_error_message="An agent with this name already exists."),
        ]

    def __str__(self):
        return self.name


class AgentKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class AgentKey(models.Model):
    """An API key: only its SHA-256 is stored; the plain key is shown once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="the visible start of the key")
    hashed = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="requests per second before 429; empty means unlimited")

    objects = AgentKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.agent.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- prompts, versions, labels, feedback (the refinement loop) --------------------------------


class PromptKind(models.TextChoices):
    TEXT = "text", "Plain text"
    CHAT = "chat", "Chat messages (JSON)"


class LabelName(models.TextChoices):
    PRODUCTION = "production", "production"
    STAGING = "staging", "staging"
    CANARY = "canary", "canary"


class Prompt(models.Model):
    """A named prompt; its text lives in immutable, numbered versions."""

    name = models.SlugField(max_length=200, unique=True, help_text="letters, digits, - and _",
                            error_messages={"unique": "A prompt with this name already exists."})
    description = models.CharField(max_length=500, blank=True)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owned_prompts",
                                    help_text="told when a canary is rolled back or could be promoted")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ImmutableVersion(Exception):
    """A saved prompt version never changes: make a new version instead."""


class PromptVersion(models.Model):
    """One version of a prompt. Immutable once saved (``save`` refuses updates)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=4, choices=PromptKind.choices, default=PromptKind.TEXT)
    template = models.TextField(help_text="plain text with {variables}, or a JSON list of chat messages")
    variables = models.JSONField(default=list, blank=True, help_text="declared variable names")
    model = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    commit_message = models.CharField(max_length=500, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number_unique"),
        ]

    def __str__(self):
        return f"{self.prompt.name} v{self.number}" if self.prompt_id else f"v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ImmutableVersion(f"{self} is immutable; create a new version instead.")
        super().save(*args, **kwargs)

    @property
    def messages(self):
        """The chat messages of a chat version (a list), else None."""
        if self.kind != PromptKind.CHAT:
            return None
        import json

        try:
            return json.loads(self.template)
        except ValueError:
            return None


class PromptLabel(models.Model):
    """A label points at one version. ``canary`` takes ``share`` percent of production's callers."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=20, choices=LabelName.choices)
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    share = models.PositiveSmallIntegerField(default=100, help_text="percent of callers (canary only), 0-100")
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["prompt", "name"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "name"], name="prompt_label_unique"),
            models.CheckConstraint(condition=models.Q(share__lte=100), name="prompt_label_share_max_100"),
        ]

    def __str__(self):
        return f"{self.prompt.name}@{self.name} -> v{self.version.number}"


class LabelMove(models.Model):
    """History of label moves (the rollback target is the previous row's version)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=20, choices=LabelName.choices)
    from_version = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    to_version = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="empty when the label was removed")
    share = models.PositiveSmallIntegerField(default=100)
    actor = models.CharField(max_length=200)
    reason = models.CharField(max_length=500, blank=True)
    is_rollback = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["prompt", "label", "-id"], name="label_move_prompt_label")]

    def __str__(self):
        to = f"v{self.to_version.number}" if self.to_version_id else "removed"
        return f"{self.prompt.name}@{self.label} -> {to}"


class FeedbackSource(models.TextChoices):
    DECISION = "decision", "Reviewer decision"
    RATING = "rating", "Rating"


class FeedbackVerdict(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    MODIFY = "modify", "Approved with edits"
    UP = "up", "Thumbs up"
    DOWN = "down", "Thumbs down"


class FeedbackQuerySet(models.QuerySet):
    def decisions(self):
        return self.filter(source=FeedbackSource.DECISION)

    def ratings(self):
        return self.filter(source=FeedbackSource.RATING)


class Feedback(models.Model):
    """A lesson about one prompt version: a reviewer's decision or a rating. One row per source."""

    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="feedback")
    source = models.CharField(max_length=10, choices=FeedbackSource.choices)
    source_key = models.CharField(max_length=200, unique=True,
                                  help_text="decision:<id> or rating:<user id>:<trace id>:<span id>")
    verdict = models.CharField(max_length=10, choices=FeedbackVerdict.choices)
    category = models.CharField(max_length=100, blank=True)
    text = models.TextField(blank=True)
    action = models.CharField(max_length=300, blank=True, help_text="the action the agent asked for")
    summary = models.TextField(blank=True)
    arguments = models.JSONField(null=True, blank=True, help_text="the arguments the agent proposed")
    argument_diff = models.JSONField(null=True, blank=True, help_text="{field: {from, to}} of a modify")
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    span_id = models.CharField(max_length=16, blank=True)
    approval_id = models.BigIntegerField(null=True, blank=True)
    decision_id = models.BigIntegerField(null=True, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    addressed_by = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="addressed_feedback",
                                     help_text="the later version written to answer this feedback")
    created_at = models.DateTimeField(db_index=True)

    objects = FeedbackQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["version", "source", "created_at"], name="feedback_version_source")]

    def __str__(self):
        return f"{self.get_verdict_display()} on {self.version}"


class CanaryOutcome(models.TextChoices):
    ROLLED_BACK = "rolled_back", "Rolled back automatically"
    PROMOTION_SUGGESTED = "promote", "Promotion suggested"


class CanaryVerdict(models.Model):
    """What the canary guard concluded about a canary; at most one row per outcome and canary stint."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="canary_verdicts")
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="canary_verdicts")
    baseline = models.ForeignKey(PromptVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=20, choices=CanaryOutcome.choices)
    started_by = models.ForeignKey(LabelMove, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="the label move that began this canary stint")
    summary = models.TextField()
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="promoted or dismissed")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One verdict of each kind per canary stint: re-running the guard, or two workers, add nothing;
            # putting the version on canary again starts a new stint that is judged afresh.
            models.UniqueConstraint(fields=["started_by", "outcome"], name="canary_verdict_once_per_stint"),
        ]

    def __str__(self):
        return f"{self.version}: {self.get_outcome_display()}"


class PromptWebhook(models.Model):
    """A subscriber told (signed POST) when a label of its prompt moves; no prompt = every prompt."""

    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="HMAC-SHA256 key for the X-Console-Signature header")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """Outbox row: written with the label move, sent (with retries) by a job."""

    webhook = models.ForeignKey(PromptWebhook, on_delete=models.CASCADE, related_name="deliveries")
    move = models.ForeignKey(LabelMove, on_delete=models.CASCADE, related_name="deliveries")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "move"], name="webhook_delivery_once"),
        ]


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    at = models.DateTimeField()
    status_code = models.IntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]

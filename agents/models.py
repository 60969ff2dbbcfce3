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

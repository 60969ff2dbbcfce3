from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One append-only line of the audit log, chained to the one before by hash.

    Rows are never updated or deleted (a PostgreSQL trigger refuses it too);
    ``python manage.py verify_audit`` recomputes the chain.
    """

    at = models.DateTimeField(db_index=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=200, help_text="who acted: user:<name>, agent:<name> or system")
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=100)
    target_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self):
        return f"#{self.pk} {self.actor} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit entries are append-only")


class LoginAttempt(models.Model):
    """Failed logins, for rate limiting by username and address."""

    at = models.DateTimeField(db_index=True)
    username = models.CharField(max_length=150)
    address = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["username", "address", "at"])]

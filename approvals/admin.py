from django.contrib import admin

from approvals import models


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look only: every approvals write goes through the services (four eyes, the digest binding, the
    exactly-once ledgers, the audit log); an edit here would bypass them all."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LevelInline(admin.TabularInline):
    model = models.EscalationLevel
    extra = 0
    has_add_permission = ReadOnlyAdmin.has_add_permission
    has_change_permission = ReadOnlyAdmin.has_change_permission
    has_delete_permission = ReadOnlyAdmin.has_delete_permission


@admin.register(models.EscalationMatrix)
class EscalationMatrixAdmin(ReadOnlyAdmin):
    inlines = [LevelInline]


@admin.register(models.GuardianRule)
class GuardianRuleAdmin(ReadOnlyAdmin):
    list_display = ["order", "name", "enabled", "agent", "action_pattern", "outcome", "queue"]
    list_display_links = ["name"]


@admin.register(models.ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "action", "risk", "status", "queue", "due_at", "decider"]
    list_filter = ["status", "risk", "queue"]
    raw_id_fields = ["agent", "matched_rule", "claimed_by", "decided_by"]


admin.site.register([models.Queue, models.SlaPolicy, models.Decision, models.EscalationFiring,
                     models.Delivery, models.DeliveryAttempt], ReadOnlyAdmin)

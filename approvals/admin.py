from django.contrib import admin

from approvals import models


class LevelInline(admin.TabularInline):
    model = models.EscalationLevel
    extra = 0


@admin.register(models.EscalationMatrix)
class EscalationMatrixAdmin(admin.ModelAdmin):
    inlines = [LevelInline]


@admin.register(models.GuardianRule)
class GuardianRuleAdmin(admin.ModelAdmin):
    list_display = ["order", "name", "enabled", "agent", "action_pattern", "outcome", "queue"]
    list_display_links = ["name"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look only: a request's state and its decisions change through the services (four eyes, the digest
    binding, the audit log); an edit here would bypass all three."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "action", "risk", "status", "queue", "due_at", "decider"]
    list_filter = ["status", "risk", "queue"]
    raw_id_fields = ["agent", "matched_rule", "claimed_by", "decided_by"]


admin.site.register(models.Decision, ReadOnlyAdmin)
admin.site.register([models.Queue, models.SlaPolicy, models.EscalationFiring,
                     models.Delivery, models.DeliveryAttempt])

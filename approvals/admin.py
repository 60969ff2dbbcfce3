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


@admin.register(models.ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "action", "risk", "status", "queue", "due_at", "decider"]
    list_filter = ["status", "risk", "queue"]
    raw_id_fields = ["agent", "matched_rule", "claimed_by", "decided_by"]


admin.site.register([models.Queue, models.SlaPolicy, models.Decision, models.EscalationFiring,
                     models.Delivery, models.DeliveryAttempt])

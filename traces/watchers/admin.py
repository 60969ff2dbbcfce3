from django.contrib import admin

from console.admin_audit import AuditedAdmin
from traces.incident_models import AutonomyBar, DetectorConfig


@admin.register(DetectorConfig)
class DetectorConfigAdmin(AuditedAdmin, admin.ModelAdmin):
    audit_name = "detector"
    audit_exclude = ("updated_at",)
    list_display = ("kind", "agent", "enabled", "params", "actions", "updated_at")
    list_filter = ("kind", "enabled")


@admin.register(AutonomyBar)
class AutonomyBarAdmin(AuditedAdmin, admin.ModelAdmin):
    audit_name = "autonomy_bar"
    list_display = ("min_decisions", "min_unedited_rate", "no_rejections_in_last", "incident_free_days")

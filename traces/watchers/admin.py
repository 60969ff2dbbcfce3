from django.contrib import admin

from traces.incident_models import AutonomyBar, DetectorConfig


@admin.register(DetectorConfig)
class DetectorConfigAdmin(admin.ModelAdmin):
    list_display = ("kind", "agent", "enabled", "params", "actions", "updated_at")
    list_filter = ("kind", "enabled")


@admin.register(AutonomyBar)
class AutonomyBarAdmin(admin.ModelAdmin):
    list_display = ("min_decisions", "min_unedited_rate", "no_rejections_in_last", "incident_free_days")

from django.contrib import admin

from console.admin_audit import AuditedAdmin
from traces import pricing, redaction
from traces.models import ModelPrice, RedactionRule, Run


@admin.register(ModelPrice)
class ModelPriceAdmin(AuditedAdmin, admin.ModelAdmin):
    audit_name = "model_price"
    audit_exclude = ("updated_at",)
    list_display = ("model", "input_per_million", "output_per_million", "updated_at")
    search_fields = ("model",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        pricing.invalidate_cache()


@admin.register(RedactionRule)
class RedactionRuleAdmin(AuditedAdmin, admin.ModelAdmin):
    audit_name = "redaction_rule"
    audit_exclude = ("hit_count", "created_at", "updated_at")
    list_display = ("name", "builtin", "enabled", "replacement", "hit_count")
    readonly_fields = ("builtin", "hit_count")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.builtin:  # built-ins live in code and are always on
            return ("name", "pattern", "replacement", "enabled", "builtin", "hit_count")
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return not (obj is not None and obj.builtin)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        redaction.invalidate_cache()


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("trace_id", "agent", "name", "status", "started_at", "span_count", "cost")
    list_filter = ("status",)
    search_fields = ("trace_id", "name")
    raw_id_fields = ("agent",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

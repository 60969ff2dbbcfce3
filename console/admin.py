"""Users and groups in the Django admin, audited: a user's groups are their console roles."""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from console.admin_audit import AuditedAdmin

User = get_user_model()


class AuditedUserAdmin(AuditedAdmin, auth_admin.UserAdmin):
    audit_name = "user"
    audit_exclude = ("password", "last_login")  # never the hash; logins are not role changes


class AuditedGroupAdmin(AuditedAdmin, auth_admin.GroupAdmin):
    audit_name = "group"


for model, model_admin in ((User, AuditedUserAdmin), (Group, AuditedGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)

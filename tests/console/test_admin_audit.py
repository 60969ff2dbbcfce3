"""Policy and role changes made in the Django admin (/django-admin/) are audited like the console's own
editors: redaction rules, detector settings (the watchers' playbooks), the autonomy bar, model prices,
users' roles (groups, superuser and staff flags) and the groups themselves."""

import pytest
from django.contrib.auth.models import Group

from console.models import AuditEntry
from console.roles import Role, ensure_role_groups
from tests import factories
from traces.incident_models import DetectorConfig
from traces.models import RedactionRule

pytestmark = pytest.mark.django_db


def test_a_redaction_rule_added_changed_and_deleted_in_the_admin_is_audited(superuser_client):
    client, user = superuser_client
    response = client.post("/django-admin/traces/redactionrule/add/",
                           {"name": "order-ids", "pattern": r"ORD-\d{6}", "replacement": "[ORDER]", "enabled": "on"})
    assert response.status_code == 302, response.content[:2000]
    rule = RedactionRule.objects.get(name="order-ids")
    created = AuditEntry.objects.get(action="redaction_rule.created", target_id=str(rule.pk))
    assert created.actor == "user:root" and created.after["pattern"] == r"ORD-\d{6}"

    response = client.post(f"/django-admin/traces/redactionrule/{rule.pk}/change/",
                           {"name": "order-ids", "pattern": r"ORD-\d{8}", "replacement": "[ORDER]"})
    assert response.status_code == 302
    updated = AuditEntry.objects.get(action="redaction_rule.updated", target_id=str(rule.pk))
    assert updated.before["pattern"] == r"ORD-\d{6}" and updated.after["pattern"] == r"ORD-\d{8}"
    assert updated.before["enabled"] is True and updated.after["enabled"] is False

    response = client.post(f"/django-admin/traces/redactionrule/{rule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not RedactionRule.objects.filter(pk=rule.pk).exists()
    deleted = AuditEntry.objects.get(action="redaction_rule.deleted", target_id=str(rule.pk))
    assert deleted.before["pattern"] == r"ORD-\d{8}"


def test_deleting_with_the_admins_bulk_action_audits_each_row(superuser_client):
    client, _user = superuser_client
    rules = [RedactionRule.objects.create(name=f"r{i}", pattern=f"x{i}") for i in range(2)]
    response = client.post("/django-admin/traces/redactionrule/", {
        "action": "delete_selected", "post": "yes", "_selected_action": [r.pk for r in rules]})
    assert response.status_code == 302 and not RedactionRule.objects.filter(name__in=["r0", "r1"]).exists()
    assert set(AuditEntry.objects.filter(action="redaction_rule.deleted").values_list("target_id", flat=True)) == {
        str(r.pk) for r in rules}


def test_detector_settings_changed_in_the_admin_are_audited(superuser_client):
    client, _user = superuser_client
    response = client.post("/django-admin/traces/detectorconfig/add/", {
        "kind": "loop", "enabled": "on", "params": '{"repeats": 9}', "actions": '["notify"]'})
    assert response.status_code == 302, response.content[:2000]
    row = DetectorConfig.objects.get(kind="loop")
    entry = AuditEntry.objects.get(action="detector.created", target_id=str(row.pk))
    assert entry.after["params"] == {"repeats": 9} and entry.after["actions"] == ["notify"]


def test_a_users_roles_changed_in_the_admin_are_audited(superuser_client):
    client, _user = superuser_client
    ensure_role_groups()
    target = factories.make_user(Role.REVIEWER, username="rita")
    admin_group = Group.objects.get(name=Role.ADMIN)
    response = client.post(f"/django-admin/auth/user/{target.pk}/change/", {
        "username": "rita", "email": "rita@example.test", "is_active": "on", "is_staff": "on",
        "groups": [admin_group.pk], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00"})
    assert response.status_code == 302, response.content[:3000]
    target.refresh_from_db()
    assert set(target.groups.values_list("name", flat=True)) == {Role.ADMIN}
    entry = AuditEntry.objects.get(action="user.updated", target_id=str(target.pk))
    assert entry.actor == "user:root"
    assert entry.before["groups"] == [Role.REVIEWER] and entry.after["groups"] == [Role.ADMIN]
    assert entry.before["is_staff"] is False and entry.after["is_staff"] is True
    assert "password" not in entry.after  # never the password hash

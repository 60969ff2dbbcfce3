from django.db import migrations

APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION console_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'console_auditentry is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER console_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON console_auditentry
    FOR EACH ROW EXECUTE FUNCTION console_audit_append_only();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS console_audit_no_update_delete ON console_auditentry;
DROP FUNCTION IF EXISTS console_audit_append_only();
"""



def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ("Reviewer", "Operator", "Admin"):
        Group.objects.get_or_create(name=name)


def append_only(apps, schema_editor):
    # PostgreSQL only: row triggers do not fire on TRUNCATE, which test flushes use.
    # On SQLite (embedded) the model refuses updates and deletes; verify_audit catches the rest.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY_SQL, params=None)


def drop_append_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(create_groups, migrations.RunPython.noop),
        migrations.RunPython(append_only, drop_append_only),
    ]

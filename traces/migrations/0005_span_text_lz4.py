"""Span content is compressed with lz4 instead of pglz where the server has it.

Prompt and completion text (1-2 KB each) pushes most LLM spans past PostgreSQL's
2 KB TOAST threshold, so every such span is compressed on ingest; pglz costs
several times lz4's CPU for a similar ratio. Existing rows stay as they are (both
read transparently); partitions created later inherit the setting. A server
built without lz4 (or SQLite) keeps the default.
"""

from django.db import migrations

COLUMNS = ("input_text", "output_text", "attributes", "events", "tool_arguments")


def _has_lz4(cursor) -> bool:
    cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    row = cursor.fetchone()
    return bool(row and row[0])


def _set(schema_editor, method: str) -> None:
    """The parent and each existing partition (PostgreSQL 15 does not recurse; new partitions inherit)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not _has_lz4(cursor):
            return
        cursor.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'traces_span'::regclass")
        tables = ["traces_span"] + [row[0] for row in cursor.fetchall()]
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} " + ", ".join(
                f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in COLUMNS))


def use_lz4(apps, schema_editor):
    _set(schema_editor, "lz4")


def use_default(apps, schema_editor):
    _set(schema_editor, "DEFAULT")


class Migration(migrations.Migration):
    dependencies = [("traces", "0004_default_model_prices")]

    operations = [migrations.RunPython(use_lz4, use_default)]

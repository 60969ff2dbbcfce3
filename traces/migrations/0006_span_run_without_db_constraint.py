"""Spans keep their run in Django (cascade on delete) but without a database constraint: PostgreSQL checked it
with a row lock on the run for every span stored, ~10 µs of its CPU per span at ingest (COPY of 40,000
bench spans: 1.44-1.88 s without the constraint, 1.83-3.72 s with it, alternated on one loaded machine)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('traces', '0005_span_text_lz4'),
    ]

    operations = [
        migrations.AlterField(
            model_name='span',
            name='run',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='spans', to='traces.run'),
        ),
    ]

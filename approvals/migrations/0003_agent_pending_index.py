"""A partial index on the pending requests of each agent: the per-agent cap counts them on every create,
which otherwise read all of a long-lived agent's request history."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0003_canary_verdict_per_stint'),
        ('approvals', '0002_conflicts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='approvalrequest',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['agent'], name='approval_agent_pending'),
        ),
    ]

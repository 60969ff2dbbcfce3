"""The Celery app used in production mode (``REDIS_URL`` set).

Tasks are thin wrappers around each app's ``jobs`` functions; the embedded
scheduler (``console.scheduler``) calls the very same functions.
"""

import os

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def _connect_per_task_in_workers(**_kwargs):
    """Workers connect per task, without Django's connection pool.

    Celery's Django fixup closes the pool before and after every task of a prefork worker, so there
    a pool only costs a new pool (and its background connections) per task; and while PostgreSQL is
    down each task waited the pool's timeout and each new pool logged a warning per reconnection try.
    """
    from django.conf import settings

    for database in settings.DATABASES.values():
        database.get("OPTIONS", {}).pop("pool", None)

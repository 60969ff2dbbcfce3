"""The Celery app used in production mode (``REDIS_URL`` set).

Tasks are thin wrappers around each app's ``jobs`` functions; the embedded
scheduler (``console.scheduler``) calls the very same functions.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

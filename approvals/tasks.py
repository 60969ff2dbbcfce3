"""Celery wrappers. Beat runs the periodic jobs through ``console.run_job``; these
let other code nudge a sweep or a delivery without waiting for the next tick."""

from celery import shared_task
from django.utils import timezone

from approvals import jobs


@shared_task(name="approvals.sweep", ignore_result=True)
def sweep() -> None:
    jobs.sweep(now=timezone.now())


@shared_task(name="approvals.deliver", ignore_result=True)
def deliver() -> None:
    jobs.deliver_pending_notifications(now=timezone.now())

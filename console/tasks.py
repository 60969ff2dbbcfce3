from celery import shared_task

from console import scheduler


@shared_task(name="console.run_job", ignore_result=True)
def run_job(name: str) -> None:
    scheduler.run_job(name)

"""Runs the periodic jobs of ``settings.CONSOLE_JOBS``.

Production: Celery beat sends ``console.run_job`` to workers. Embedded: one
daemon thread inside the server process calls the same functions. Jobs are
idempotent, so an overlap or a restart does no harm.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_stop = threading.Event()


def run_job(name: str):
    path, _interval = settings.CONSOLE_JOBS[name]
    job = import_string(path)
    close_old_connections()
    try:
        return job(now=timezone.now())
    finally:
        close_old_connections()


def _loop(tick: float) -> None:
    next_due = {name: 0.0 for name in settings.CONSOLE_JOBS}
    while not _stop.is_set():
        started = time.monotonic()
        for name, (_path, interval) in settings.CONSOLE_JOBS.items():
            if started < next_due.get(name, 0.0):
                continue
            next_due[name] = started + interval
            try:
                run_job(name)
            except Exception:  # noqa: BLE001 - one failing job must not stop the others
                log.exception("job %s failed", name)
        _stop.wait(tick)


def start_if_embedded(tick: float = 1.0) -> bool:
    """Start the scheduler thread once per process in the embedded mode."""
    global _thread
    if settings.CONSOLE_SCHEDULER != "embedded" or getattr(settings, "CONSOLE_DISABLE_SCHEDULER", False):
        return False
    if _thread is not None and _thread.is_alive():
        return True
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(tick,), name="console-scheduler", daemon=True)
    _thread.start()
    log.info("embedded scheduler started with %d jobs", len(settings.CONSOLE_JOBS))
    return True


def stop() -> None:
    _stop.set()


def is_running() -> bool:
    return _thread is not None and _thread.is_alive()

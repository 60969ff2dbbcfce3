"""Runs the periodic jobs of ``settings.CONSOLE_JOBS``.

Production: Celery beat sends ``console.run_job`` to workers. Embedded: one
daemon thread inside the server process calls the same functions. Jobs are
idempotent, so an overlap or a restart does no harm.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_stop = threading.Event()

# While the database is unreachable every job run fails the same way: say so once, then once a
# minute, instead of a traceback per run (several a second with the 2 s jobs).
OUTAGE_REMINDER_S = 60.0
_outage = {"since": None, "skipped": 0, "told": 0.0}


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached (down, restarting, no connection in time), not a query's error.

    A deadlock or a serialization failure is an OperationalError too, but it carries its SQLSTATE;
    failures to connect carry none, a server going away carries class 08 or 57P.
    """
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    cause = exc.__cause__
    if type(cause).__module__.partition(".")[0] not in ("psycopg", "psycopg_pool"):
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def run_job(name: str):
    """Run one job; while the database is unreachable the run is skipped (the next run catches up,
    every job being idempotent) and logged without a traceback."""
    path, _interval = settings.CONSOLE_JOBS[name]
    job = import_string(path)
    close_old_connections()
    try:
        result = job(now=timezone.now())
        if _outage["since"] is not None:
            _end_of_outage()  # (some jobs have nothing to do without touching the database)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        _skipped_for_outage(name, exc)
        return None
    finally:
        close_old_connections()
    return result


def _end_of_outage() -> None:
    connection.ensure_connection()  # raises while still unreachable
    log.warning("database available again: %d job runs were skipped in %.0f s; their work is caught up now",
                _outage["skipped"], time.monotonic() - _outage["since"])
    _outage.update(since=None, skipped=0)


def _skipped_for_outage(name: str, exc: BaseException) -> None:
    now = time.monotonic()
    if _outage["since"] is None:
        _outage.update(since=now, skipped=0, told=0.0)
    _outage["skipped"] += 1
    if now - _outage["told"] >= OUTAGE_REMINDER_S:
        _outage["told"] = now
        log.warning("database unavailable: job %s skipped (%d job runs skipped so far; the jobs catch up "
                    "when it returns): %s", name, _outage["skipped"], str(exc).splitlines()[0] if str(exc) else
                    type(exc).__name__)


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

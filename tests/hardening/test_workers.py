"""Real Celery processes (worker and beat, as production runs them) on the test PostgreSQL and Redis.

- A worker killed with SIGKILL inside an escalation transaction and started again: every
  (request, epoch, level, repeat) fires exactly once, none is missed, no notification is doubled.
- Two beats and two workers by mistake: every sweep is sent and run twice, concurrently; still each
  step fires once.
- Redis (the broker) stopped while the worker and beat run: escalations that fell due meanwhile
  fire once each when it returns, without restarting either process.

The escalations are already due when the processes start (the requests were created an hour ago,
as after an outage), so the real clock only has to run a few sweeps (every 2 s).
"""

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from django.db import connection
from django.utils import timezone

from approvals.models import ApprovalRequest, BreachAction, Delivery, EscalationFiring, escalation_steps
from approvals.services import update_matrix
from tests import factories
from tests.hardening import private_services as ps
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 150
# The matrix below: queue reviewers at once; the boss after 5 min, twice more every 3 min; a breach page.
STEPS_PER_REQUEST = [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 1, 2), (0, EscalationFiring.BREACH_LEVEL, 0)]
RECIPIENTS = {0: 2, 1: 1, EscalationFiring.BREACH_LEVEL: 3}  # in-app deliveries per firing of each level


class Processes:
    """Celery processes of one test, each in its own process group; all killed at teardown."""

    def __init__(self, env: dict):
        self.env, self.dir = env, Path(tempfile.mkdtemp(prefix="hardening-celery-"))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "console", *args], cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, concurrency: int = 1) -> subprocess.Popen:
        return self.start(name, "worker", "--loglevel=INFO", "--pool=prefork", f"--concurrency={concurrency}",
                          "-n", f"{name}@%h", "--without-gossip", "--without-mingle")

    def beat(self, name: str) -> subprocess.Popen:
        return self.start(name, "beat", "--loglevel=INFO", "-s", str(self.dir / f"{name}-schedule"))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool children, no chance to clean up
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture
def redis_url():
    url = os.environ["REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.flushdb()  # no task left over from an earlier run
    yield url
    client.flushdb()
    client.close()


def _processes(redis_url: str) -> Processes:
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CONSOLE_TESTING"))}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": secrets.token_urlsafe(50),
                "DEBUG": "false", "LOG_LEVEL": "INFO", "CONSOLE_DB_POOL": "false", "WATCHERS_MODE": "off",
                "DJANGO_SETTINGS_MODULE": "console.settings"})
    return Processes(env)


@pytest.fixture
def celery(transactional_db, redis_url):
    processes = _processes(redis_url)
    yield processes
    processes.stop_all()  # before the database is flushed: a live worker would hold its locks


@pytest.fixture
def private_redis():
    """A Redis of this test's own that it may stop (never the shared one)."""
    ps.require("a private Redis")
    server = ps.PrivateRedis()
    server.start()
    yield server
    try:
        server.stop()
    except Exception:  # noqa: BLE001 - stopped by the test already
        pass


@pytest.fixture
def celery_on_private_redis(transactional_db, private_redis):
    processes = _processes(private_redis.url)
    yield processes
    processes.stop_all()


@pytest.fixture
def escalating_queue(admin_user):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    make_reviewer(queue, "rita")
    make_reviewer(queue, "rob")
    boss = factories.make_user(None, username="boss")
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.KEEP_PENDING_AND_PAGE, actor=admin_user, levels=[
        {"after_minutes": 0, "queue_reviewers": True, "email": False},
        {"after_minutes": 5, "user_ids": [boss.pk], "email": False, "repeat_count": 2,
         "repeat_interval_minutes": 3},
    ])
    return factories.make_agent("worker-bot")


def _requests_an_hour_old(agent) -> list[int]:
    """REQUESTS pending requests created an hour ago: all five escalation steps of each are due."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    return [make_request(agent=agent, risk="high", now=an_hour_ago).pk for _ in range(REQUESTS)]


@pytest.fixture
def overdue_requests(escalating_queue):
    return _requests_an_hour_old(escalating_queue)


def _expected() -> set:
    return {(pk, *step) for pk in ApprovalRequest.objects.values_list("pk", flat=True) for step in STEPS_PER_REQUEST}


def _fired() -> list:
    return list(EscalationFiring.objects.values_list("request_id", "epoch", "level", "repeat"))


def _wait_until(predicate, timeout: float, what: str, procs: Processes):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}\n{procs.log(name)[-1500:]}" for name in procs.procs)
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.2)


def _sweeps_run(procs: Processes, *workers: str) -> int:
    return sum(len(re.findall(r"Task console\.run_job\[[^]]+\] succeeded", procs.log(w))) for w in workers)


def _assert_each_step_fired_once_and_notified_once():
    fired = _fired()
    assert len(fired) == len(set(fired))
    assert set(fired) == _expected()
    per_firing = Counter(Delivery.objects.filter(firing__isnull=False).values_list("firing_id", "channel",
                                                                                    "recipient"))
    assert max(per_firing.values()) == 1  # no notification written twice
    levels = dict(EscalationFiring.objects.values_list("pk", "level"))
    sent = Counter(levels[firing_id] for firing_id, _channel, _recipient in per_firing)
    firings_per_level = Counter(level for _pk, _epoch, level, _repeat in fired)
    assert sent == {level: count * RECIPIENTS[level] for level, count in firings_per_level.items()}
    for snapshot, step, next_at, breached_at in ApprovalRequest.objects.values_list(
            "escalation_snapshot", "escalation_step", "next_escalation_at", "breached_at"):
        assert step == len(escalation_steps(snapshot)) and next_at is None and breached_at is not None


def _kill_inside_an_escalation_transaction(procs: Processes, worker: str, pg, *, breaches_done: bool) -> None:
    """SIGKILL ``worker`` while it is inside a transaction that has written the firing ledger.

    Caught without racing it: the test holds a SHARE lock on the deliveries table, so the worker's
    transaction, having inserted its firings, waits at its deliveries insert until the test lets go.
    With ``breaches_done`` only once every SLA breach page has committed (a breach page held meanwhile
    is let through): the transaction is then the escalation sweep's batch (``fire_due_escalations``);
    before, usually a breach page's. The killed worker's backend rolls its transaction back.
    """
    deliveries = Delivery._meta.db_table
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with pg.transaction():
            pg.execute(f"LOCK TABLE {deliveries} IN SHARE MODE")
            let_go = time.monotonic() + 2  # then release the lock a moment, whatever happens
            while time.monotonic() < let_go:
                pg.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees its first snapshot
                held, breaches = pg.execute(
                    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "        AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND wait_event_type = 'Lock' "
                    "        AND query ILIKE %s), "
                    "       (SELECT count(*) FROM approvals_escalationfiring WHERE level = %s)",
                    (f"%{deliveries}%", EscalationFiring.BREACH_LEVEL)).fetchone()
                if held and (breaches == REQUESTS or not breaches_done):
                    procs.kill(worker)
                    return
                if held:
                    break  # a breach page while the sweep is wanted: let it commit
                time.sleep(0.005)
    pytest.fail(f"never saw {worker} inside an escalation transaction:\n" + procs.log(worker)[-3000:])


def test_a_worker_killed_mid_escalation_and_restarted_fires_each_step_exactly_once(celery, overdue_requests):
    db = connection.settings_dict
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname={db['NAME']}"
    expected = _expected()
    assert len(expected) == REQUESTS * len(STEPS_PER_REQUEST) and not _fired()
    celery.beat("beat")
    celery.worker("w1")
    with psycopg.connect(dsn, autocommit=True) as pg:
        _kill_inside_an_escalation_transaction(celery, "w1", pg, breaches_done=False)
        assert len(_fired()) < len(expected), "the first kill came after the work was done"
        celery.worker("w2")
        _kill_inside_an_escalation_transaction(celery, "w2", pg, breaches_done=True)
        assert len(_fired()) < len(expected), "the second kill came after the work was done"
    celery.worker("w3")
    _wait_until(lambda: len(_fired()) >= len(expected), 90, "the restarted worker to catch up", celery)
    after = _sweeps_run(celery, "w3")
    _wait_until(lambda: _sweeps_run(celery, "w3") >= after + 10, 60, "more jobs to run", celery)
    _assert_each_step_fired_once_and_notified_once()


def test_two_beats_and_two_workers_by_mistake_fire_each_step_once(celery, overdue_requests):
    expected = _expected()
    for name in ("w1", "w2"):
        celery.worker(name, concurrency=2)
    for name in ("beat1", "beat2"):
        celery.beat(name)
    _wait_until(lambda: len(_fired()) >= len(expected), 90, "the escalations to fire", celery)
    after = _sweeps_run(celery, "w1", "w2")
    _wait_until(lambda: _sweeps_run(celery, "w1", "w2") >= after + 20, 60, "more jobs to run", celery)
    _assert_each_step_fired_once_and_notified_once()
    for beat in ("beat1", "beat2"):  # both schedulers really sent the sweep
        assert "Sending due task approvals-sweep" in celery.log(beat), celery.log(beat)[-2000:]
    for worker in ("w1", "w2"):  # and both workers really ran jobs
        assert _sweeps_run(celery, worker) > 0, celery.log(worker)[-2000:]


def test_escalations_due_while_redis_was_down_fire_once_when_it_returns(celery_on_private_redis, private_redis,
                                                                         escalating_queue):
    procs = celery_on_private_redis
    procs.worker("w1")
    procs.beat("beat")
    _wait_until(lambda: _sweeps_run(procs, "w1") >= 3, 90, "the worker to run jobs", procs)
    private_redis.stop()  # broker and channel layer gone; beat cannot send, the worker cannot receive
    try:
        _requests_an_hour_old(escalating_queue)  # agents still ask (PostgreSQL is up); escalations fall due
        expected = _expected()
        time.sleep(3)  # a few sweeps' worth of outage
        assert len(_fired()) < len(expected)  # (a sweep taken before the outage may still have run)
    finally:
        private_redis.start()  # empty: every queued task is gone too
    _wait_until(lambda: len(_fired()) >= len(expected), 120, "the escalations missed during the outage", procs)
    after = _sweeps_run(procs, "w1")
    _wait_until(lambda: _sweeps_run(procs, "w1") >= after + 10, 60, "more jobs to run", procs)
    _assert_each_step_fired_once_and_notified_once()
    assert procs.procs["w1"].poll() is None and procs.procs["beat"].poll() is None  # both rode out the outage

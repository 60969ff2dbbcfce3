"""PostgreSQL stopped under a real ``celery -A console worker -B`` (beat inside the worker, as the
soak and small deployments run it), on a private PostgreSQL and Redis (never the shared ones).

While PostgreSQL is down the worker stays alive, records nothing twice and says in its log that
the database is unavailable, without a traceback per job run. When PostgreSQL returns, without
restarting the worker, every escalation step that fell due during the outage (a level and an SLA
breach page) fires exactly once, and each of its notifications is sent once: the in-app ones
recorded once, the webhooks received once by an HTTP server.
"""

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest

from tests.approvals.test_notify import Receiver
from tests.hardening import private_services as ps
from tests.hardening.test_workers import Processes

BREACH = -1
OVERDUE = 20   # requests an hour old: all five steps due when the worker starts
COMING = 10    # of each kind below: a step falls due MARGIN_S after they are created
MARGIN_S = 45  # time to fire their earlier steps and stop PostgreSQL before the next one is due
CONCURRENCY = 2
SWEEP_S = 2    # the approvals-sweep interval (console.settings.CONSOLE_JOBS)
# Minutes after creation each step of the matrix below is due: (epoch, level, repeat) -> minutes.
STEPS = {(0, 0, 0): 0, (0, 1, 0): 5, (0, 1, 1): 8, (0, 1, 2): 11, (0, BREACH, 0): 30}  # breach: the high SLA

SETUP = """
from datetime import timedelta
from django.utils import timezone
from approvals.models import BreachAction
from approvals.services import update_matrix
from console.roles import Role
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

admin = factories.make_user(Role.ADMIN, username="ada")
queue = make_queue("payments")
make_rule(action_pattern="*", queue=queue)
make_reviewer(queue, "rita")
make_reviewer(queue, "rob")
boss = factories.make_user(None, username="boss")
update_matrix(queue_id=queue.pk, breach_action=BreachAction.KEEP_PENDING_AND_PAGE, actor=admin, levels=[
    {"after_minutes": 0, "queue_reviewers": True, "email": False},
    {"after_minutes": 5, "user_ids": [boss.pk], "email": False, "repeat_count": 2,
     "repeat_interval_minutes": 3, "webhook_url": "%(webhook)s"},
])
agent = factories.make_agent("outage-bot")
an_hour_ago = timezone.now() - timedelta(hours=1)
for _ in range(%(overdue)d):
    make_request(agent=agent, risk="high", now=an_hour_ago)
"""

# Created just before the outage: the breach page of the first kind and the first level of the
# second kind fall due MARGIN_S later, when PostgreSQL is already down.
COMING_DUE = """
import json
from datetime import timedelta
from django.utils import timezone
from agents.models import Agent
from tests.approvals.helpers import make_request

agent = Agent.objects.get(name="outage-bot")
now = timezone.now()
due = now + timedelta(seconds=%(margin)d)
breaching = [make_request(agent=agent, risk="high", now=due - timedelta(minutes=30)).pk for _ in range(%(n)d)]
leveling = [make_request(agent=agent, risk="high", now=due - timedelta(minutes=5)).pk for _ in range(%(n)d)]
print("COMING=" + json.dumps({"due": due.timestamp(), "breaching": breaching, "leveling": leveling}))
"""


@pytest.fixture
def services():
    ps.require("a private PostgreSQL and Redis")
    pg, redis = ps.PrivatePostgres(), ps.PrivateRedis()
    try:
        pg.init()
        redis.start()
        yield pg, redis
    finally:
        try:
            redis.stop()
        except Exception:  # noqa: BLE001 - never started
            pass
        pg.destroy()


def _rows(pg, sql: str, *params) -> list[tuple]:
    with psycopg.connect(pg.url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def _firings(pg) -> list[tuple]:
    return _rows(pg, "SELECT request_id, epoch, level, repeat FROM approvals_escalationfiring")


def _created(pg) -> dict[int, datetime]:
    return dict(_rows(pg, "SELECT id, created_at FROM approvals_approvalrequest"))


def _due(created: dict[int, datetime], by: datetime) -> set[tuple]:
    """Every (request, epoch, level, repeat) of the matrix due at ``by``."""
    return {(pk, *step) for pk, at in created.items() for step, minutes in STEPS.items()
            if at.timestamp() + minutes * 60 <= by.timestamp()}


def _unsent(pg) -> int:
    return _rows(pg, "SELECT count(*) FROM approvals_delivery WHERE status <> 'sent'")[0][0]


def _wait(predicate, timeout: float, what: str, procs: Processes):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{procs.log('worker')[-3000:]}")
        time.sleep(0.5)


def _job_runs(log: str) -> int:
    return len(re.findall(r"Task console\.run_job\[[^]]+\] received", log))


def test_escalations_due_while_postgresql_was_down_fire_once_and_the_worker_survives(services):
    pg, redis = services
    with Receiver() as webhook:
        env = ps.console_env(pg, redis, LOG_LEVEL="INFO", WATCHERS_MODE="off",
                             WEBHOOK_ALLOWED_PRIVATE_HOSTS="127.0.0.1")  # the receiver is local
        ps.manage(env, "migrate", "-v0")
        ps.manage(env, "shell", "-c", SETUP % {"webhook": webhook.url, "overdue": OVERDUE})
        procs = Processes(env)
        try:
            worker = procs.start("worker", "worker", "-B", "-s", str(procs.dir / "beat-schedule"), "--loglevel=INFO",
                                 f"--concurrency={CONCURRENCY}", "-n", "outage@%h")
            _wait(lambda: _due(_created(pg), datetime.now(UTC)) <= set(_firings(pg)) and not _unsent(pg), 120,
                  "the overdue escalations to fire and be sent", procs)

            coming = json.loads(re.search(r"COMING=(.+)", ps.manage(env, "shell", "-c", COMING_DUE % {
                "margin": MARGIN_S, "n": COMING})).group(1))
            created = _created(pg)
            before_outage = _due(created, datetime.now(UTC))
            _wait(lambda: before_outage <= set(_firings(pg)) and not _unsent(pg), MARGIN_S,
                  "the steps already due to fire and be sent before the outage", procs)
            log_at_stop = len(procs.log("worker"))
            pg.stop()
            stopped_at = time.time()
            if stopped_at >= coming["due"]:
                pytest.fail("the machine was too slow: the coming steps fell due before PostgreSQL stopped")

            # The outage: the steps fall due, and a few sweeps' worth more.
            time.sleep(coming["due"] - stopped_at + 5 * SWEEP_S)
            assert worker.poll() is None, "the worker exited during the outage:\n" + procs.log("worker")[-3000:]
            outage_log = procs.log("worker")[log_at_stop:]
            pg.start()
            restarted_at = datetime.now(UTC)

            due_in_outage = _due(created, restarted_at) - before_outage
            assert {(pk, 0, BREACH, 0) for pk in coming["breaching"]} <= due_in_outage
            assert {(pk, 0, 1, 0) for pk in coming["leveling"]} <= due_in_outage
            _wait(lambda: _due(created, restarted_at) <= set(_firings(pg)) and not _unsent(pg), 120,
                  "the steps that fell due during the outage to fire and be sent", procs)
            runs = _job_runs(procs.log("worker"))
            _wait(lambda: _job_runs(procs.log("worker")) >= runs + 20, 90, "more jobs to run", procs)
            assert worker.poll() is None, procs.log("worker")[-3000:]
            checked_at = datetime.now(UTC)
            log = procs.log("worker")
        finally:
            procs.stop_all()

    # Each step fired once: none twice, none missed, none early.
    fired = _firings(pg)
    assert len(fired) == len(set(fired))
    assert _due(created, restarted_at) <= set(fired) <= _due(created, checked_at)
    fired_at = dict(((r, e, lv, rp), at) for r, e, lv, rp, at in _rows(
        pg, "SELECT request_id, epoch, level, repeat, fired_at FROM approvals_escalationfiring"))
    assert all(fired_at[step].timestamp() >= coming["due"] for step in due_in_outage)  # after the stop

    # Each notification of each firing written once and sent once.
    deliveries = _rows(pg, "SELECT id, firing_id, channel, recipient, status, attempts FROM approvals_delivery "
                           "WHERE firing_id IS NOT NULL")
    assert len({(f, ch, to) for _id, f, ch, to, _s, _a in deliveries}) == len(deliveries)
    assert {(status, attempts) for *_rest, status, attempts in deliveries} == {("sent", 1)}
    levels = dict(_rows(pg, "SELECT id, level FROM approvals_escalationfiring"))
    per_firing = Counter(f for _id, f, ch, _to, _s, _a in deliveries if ch == "webhook")
    assert {f for f, level in levels.items() if level == 1} <= set(per_firing)  # the level-1 webhook
    posted = Counter(headers["X-Console-Delivery"] for headers, _body in webhook.received)
    assert posted == Counter(str(pk) for pk, _f, ch, *_rest in deliveries if ch == "webhook")  # each once

    # The log says why, once per worker process (and a reminder a minute), not a traceback per job run.
    outage_runs = _job_runs(outage_log)
    told = re.findall(r"database unavailable: job \S+ skipped", outage_log)
    assert outage_runs >= 10, outage_log[-3000:]
    assert 1 <= len(told) <= 2 * CONCURRENCY, outage_log[-3000:]
    assert "Traceback" not in outage_log and "ERROR" not in outage_log, outage_log[-5000:]
    assert "database available again" in log[log_at_stop + len(outage_log):], log[-3000:]
    assert log.count("Traceback") <= 2, log[-5000:]  # (a job cut off mid-query as PostgreSQL stops)

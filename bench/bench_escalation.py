"""Escalation lateness: how long after its due time an escalation level fires, with the real scheduler.

Production mode on its own database (``<bench db>_escalation``): ``celery -A console worker -B`` runs
every job of ``CONSOLE_JOBS`` on its beat (the escalation sweep every 2 s). Once the worker has fired
a first (canary) escalation, ``REQUESTS`` pending requests are written whose first escalation level
falls due at known moments, spread over ``SPREAD_S`` seconds, starting a few seconds ahead. An
observer polls the ledger (``approvals_escalationfiring``) every ``POLL_S`` and stamps when each
firing becomes visible (committed). Lateness = visible - due (what a reviewer waiting for the page
experiences, within the poll interval); the notes also give ``fired_at`` - due (the job's own clock).

Run: ``.venv/bin/python -m bench escalation``.
"""

import json
import os
import time

from bench.common import (CeleryWorker, Result, bench_env, database_url, load_average, manage, percentile,
                          reset_named_database)

REQUESTS = int(os.environ.get("BENCH_ESCALATION_REQUESTS", "300"))
SPREAD_S = float(os.environ.get("BENCH_ESCALATION_SPREAD_S", "60"))
LEAD_S = 5.0  # the first request falls due this long after it is written
POLL_S = 0.05
TARGET_MS = 5000

SETUP = """
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from agents import services as agent_services
from approvals.models import ApprovalRequest, Queue
from console.roles import Role, grant_role
snapshot = json.loads({snapshot!r})
agent = agent_services.create_agent(name="bench-escalation", actor="system:bench")
queue, _ = Queue.objects.get_or_create(name="bench-escalation")
for name in ("bench-rev-1", "bench-rev-2"):
    user, _ = get_user_model().objects.get_or_create(username=name)
    grant_role(user, Role.REVIEWER)
    queue.members.add(user)
now = timezone.now()
def pending(resource, due):
    return ApprovalRequest.objects.create(
        agent=agent, action="refunds.issue", arguments={{"amount": 1}}, arguments_digest="0" * 64,
        summary="bench", risk="high", resource=resource, status="pending", queue=queue,
        due_at=due + timedelta(minutes=30), escalation_snapshot=snapshot, breach_action="keep_pending_and_page",
        escalation_started_at=due, escalation_step=0, next_escalation_at=due, created_at=now)
canary = pending("bench:canary", now)
print("CANARY=" + json.dumps(canary.pk))
"""

TIMED = """
import json
from datetime import timedelta
from django.db import connection
from django.utils import timezone
from approvals.models import ApprovalRequest
template = ApprovalRequest.objects.get(resource="bench:canary")
base = timezone.now() + timedelta(seconds={lead})
# Copies of the canary row (so columns added later keep the template's values), due at base + i * gap.
with connection.cursor() as cur:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'approvals_approvalrequest' "
                "AND column_name <> 'id' ORDER BY ordinal_position")
    columns = [r[0] for r in cur.fetchall()]
    due = "%(base)s + (g * %(gap)s) * interval '1 second'"
    overrides = {{"resource": "'bench:timed:' || g", "escalation_step": "0", "escalation_started_at": due,
                 "next_escalation_at": due, "due_at": due + " + interval '30 minutes'"}}
    select = ", ".join(overrides.get(c, f'"{{c}}"') for c in columns)
    cur.execute(f"INSERT INTO approvals_approvalrequest ({{', '.join(chr(34) + c + chr(34) for c in columns)}}) "
                f"SELECT {{select}} FROM approvals_approvalrequest, generate_series(0, %(n)s - 1) g WHERE id = %(id)s",
                {{"n": {n}, "gap": {gap}, "base": base, "id": template.pk}})
print("BASE=" + json.dumps(base.timestamp()))
"""

SNAPSHOT = {"matrix_id": None, "breach_action": "keep_pending_and_page", "levels": [
    {"order": 0, "after_minutes": 0, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
     "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
    {"order": 1, "after_minutes": 600, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
     "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
]}


def _marker(stdout: str, name: str):
    for line in stdout.splitlines():
        if line.startswith(name + "="):
            return json.loads(line[len(name) + 1:])
    raise RuntimeError(f"no {name} in output: {stdout[-2000:]}")


def _firings(conn) -> dict[int, float]:
    """request id -> fired_at (epoch seconds) of level 0 firings."""
    rows = conn.execute("SELECT request_id, extract(epoch FROM fired_at) FROM approvals_escalationfiring "
                        "WHERE level = 0").fetchall()
    return {r[0]: float(r[1]) for r in rows}


def run() -> list[Result]:
    import psycopg

    url = database_url("escalation")
    env = bench_env(DATABASE_URL=url)
    reset_named_database(url, env)
    out = manage("shell", "-c", SETUP.format(snapshot=json.dumps(SNAPSHOT)), env=env)
    canary = _marker(out.stdout, "CANARY")
    gap = SPREAD_S / max(REQUESTS - 1, 1)
    with psycopg.connect(url, autocommit=True) as conn, CeleryWorker(env, "escalation") as worker:
        deadline = time.monotonic() + 180
        while canary not in _firings(conn):  # the worker is up and its beat runs the sweep
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no escalation fired within 180 s; see {worker.log_path}")
            time.sleep(0.5)
        load_before = load_average()
        out = manage("shell", "-c", TIMED.format(lead=LEAD_S, n=REQUESTS, gap=gap), env=env)
        base = _marker(out.stdout, "BASE")
        rows = conn.execute("SELECT id, extract(epoch FROM next_escalation_at) FROM approvals_approvalrequest "
                            "WHERE resource LIKE 'bench:timed:%'").fetchall()
        due = {r[0]: float(r[1]) for r in rows}
        seen: dict[int, float] = {}
        fired: dict[int, float] = {}
        end = base + SPREAD_S + 30
        while time.time() < end and len(seen) < len(due):
            now = time.time()
            for pk, at in _firings(conn).items():
                if pk in due and pk not in seen:
                    seen[pk], fired[pk] = now, at
            time.sleep(POLL_S)
        load_after = load_average()
    late = [(seen[pk] - due[pk]) * 1000 for pk in seen]
    job_late = [(fired[pk] - due[pk]) * 1000 for pk in fired]
    early = sum(1 for v in job_late if v < 0)
    missing = len(due) - len(seen)
    notes = (f"{len(seen)} of {len(due)} requests fired (level 0), due one every {gap * 1000:.0f} ms over "
             f"{SPREAD_S:.0f} s; {missing} not fired within 30 s of the last due time; {early} fired before "
             f"their due time; by the job's own clock (fired_at - due) p50/p99/max "
             f"{percentile(job_late, 50):.0f}/{percentile(job_late, 99):.0f}/{max(job_late, default=0):.0f} ms; "
             f"celery worker -B --concurrency=2, sweep every 2 s; ledger polled every {POLL_S * 1000:.0f} ms; "
             f"{load_before} before, {load_after} after")
    print(f"   escalation: {notes}", flush=True)
    if missing:
        late += [float("inf")] * missing  # a level that never fired is as late as can be
    return [
        Result("escalation: level visible after its due time p50", "ms", [percentile(late, 50)], f"< {TARGET_MS}",
               notes),
        Result("escalation: level visible after its due time p99", "ms", [percentile(late, 99)], f"< {TARGET_MS}",
               notes),
        Result("escalation: level visible after its due time max", "ms", [max(late, default=float("nan"))],
               f"< {TARGET_MS}", notes),
    ]

"""Approvals benchmarks, from a separate process against PostgreSQL + Redis.

1. Decision-to-agent latency with 500 agents waiting at once on ONE server process:
   each agent creates a request and holds ``GET /api/v1/approvals/{id}?wait=60``
   (httpx async); once all 500 have joined their wait group, another process
   decides them (the real ``decide_request``, 50 a second) and stamps the moment
   it called it; the agent stamps when its answer arrives. Same clock.
2. Escalation sweep over 100,000 pending requests (COPY-loaded), 500 of them due:
   the time of ``approvals.jobs.sweep`` measured inside a ``manage.py shell`` process.

Run: ``.venv/bin/python -m bench approvals`` (set BENCH_DATABASE_URL / BENCH_REDIS_URL to
use other databases than the shared bench ones).
"""

import asyncio
import json
import statistics
import time

import sys
from datetime import UTC, datetime, timedelta

from bench.common import PG_URL, REDIS_URL, ROOT, WORK, Result, Server, bench_env, manage, reset_database

WAITERS = 500
DECISIONS_PER_S = 50
CREATE_CONCURRENCY = 16
PENDING = 100_000
DUE_PER_SWEEP = 500
SWEEPS = 3

SETUP_AGENTS = """
import json
from agents import services
from django.contrib.auth import get_user_model
from console.roles import Role, grant_role
keys = []
for i in range({n}):
    agent = services.create_agent(name=f"bench-agent-{{i:04d}}", actor="system:bench")
    keys.append(services.issue_key(agent=agent, actor="system:bench")[1])
admin, _ = get_user_model().objects.get_or_create(username="bench-admin")
grant_role(admin, Role.ADMIN)
print("KEYS=" + json.dumps(keys))
"""

DECIDE = """
import json, sys, time
from django.contrib.auth import get_user_model
from approvals.services import decide_request
admin = get_user_model().objects.get(username="bench-admin")
ids = json.load(open({ids_path!r}))
stamps = {{}}
gap = 1.0 / {rate}
next_at = time.monotonic()
for pk in ids:
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    next_at += gap
    stamps[pk] = time.time()
    decide_request(request_id=pk, reviewer=admin, verdict="modify", reason="bench", arguments={{"amount": 1}})
print("STAMPS=" + json.dumps(stamps))
"""

SWEEP = """
import json, time
from django.db import connection
from django.utils import timezone
from approvals import jobs
samples = []
for _ in range({sweeps}):
    now = timezone.now()
    started = time.perf_counter()
    result = jobs.sweep(now=now)
    samples.append([time.perf_counter() - started, result])
started = time.perf_counter()
idle = jobs.sweep(now=timezone.now())
idle_s = time.perf_counter() - started
with connection.cursor() as cur:
    cur.execute("EXPLAIN SELECT id FROM approvals_approvalrequest WHERE status = 'pending' "
                "AND next_escalation_at <= now() ORDER BY next_escalation_at LIMIT 500")
    plan = " / ".join(r[0].strip() for r in cur.fetchall())
print("SWEEP=" + json.dumps({{"samples": samples, "idle": [idle_s, idle], "plan": plan}}))
"""


class LoggingServer(Server):
    """``bench.common.Server`` with stderr in a file: an unread PIPE blocks the server once it has logged 64 KiB."""

    def __init__(self, port: int, factory: str = ""):
        super().__init__(port=port)
        self.factory = factory  # an ASGI app factory to serve instead of ``manage.py serve``

    def __enter__(self):
        import subprocess

        import httpx

        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / f"server-{self.port}.log"
        self.log = open(self.log_path, "wb")
        if self.factory:
            command = [sys.executable, "-m", "uvicorn", "--factory", self.factory, "--port", str(self.port),
                       "--lifespan", "on", "--log-level", "warning"]
            env = {**self.env, "DJANGO_SETTINGS_MODULE": "console.settings"}
        else:
            command = [sys.executable, "manage.py", "serve", "--port", str(self.port), "--workers", str(self.workers)]
            env = self.env
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"console server did not start; see {self.log_path}")

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.log.close()


def _marker(stdout: str, name: str):
    for line in stdout.splitlines():
        if line.startswith(name + "="):
            return json.loads(line[len(name) + 1:])
    raise RuntimeError(f"no {name} in output: {stdout[-2000:]}")


def _waiting_count(client, ids) -> int:
    pipe = client.pipeline()
    for pk in ids:
        pipe.zcard(f"asgi:group:approval-{pk}")
    return sum(1 for n in pipe.execute() if n)


async def _agents(server_url: str, keys: list[str], ids_out: list, received: dict, created: asyncio.Event):
    """Phase 1: every agent creates its request (16 at a time). Phase 2: all hold ``?wait=60`` at once,
    asking again while still pending (never the case when the bench runs as planned)."""
    import httpx

    # No keep-alive: uvicorn closes idle connections after 5 s, and a reused closed one fails the next read.
    limits = httpx.Limits(max_connections=len(keys) + 50, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server_url, limits=limits, timeout=120) as client:
        creating = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(key: str) -> int:
            async with creating:
                response = await client.post("/api/v1/approvals", headers={"Authorization": f"Bearer {key}"}, json={
                    "action": "refunds.issue", "arguments": {"amount": 900}, "risk": "high", "summary": "bench"})
            response.raise_for_status()
            return response.json()["id"]

        ids = await asyncio.gather(*(create(k) for k in keys))
        ids_out.extend(ids)
        created.set()

        async def wait(key: str, pk: int):
            body = {}
            for _ in range(5):
                try:
                    answer = await client.get(f"/api/v1/approvals/{pk}", params={"wait": 60},
                                              headers={"Authorization": f"Bearer {key}"})
                except httpx.TransportError:  # a kept-alive connection the server had closed: ask again
                    continue
                try:
                    body = answer.json()
                except ValueError:
                    body = {"status": f"HTTP {answer.status_code}"}
                if body.get("status") != "pending":
                    break
            received[pk] = (time.time(), body)

        await asyncio.gather(*(wait(k, pk) for k, pk in zip(keys, ids)))


def _threads(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def _latency(server: Server, keys: list[str], label: str) -> list[Result]:
    import redis

    ids: list[int] = []
    received: dict[int, tuple] = {}
    WORK.mkdir(parents=True, exist_ok=True)
    ids_path = str(WORK / "approval_ids.json")
    rclient = redis.Redis.from_url(REDIS_URL)
    stale = list(rclient.scan_iter("asgi:group:approval-*"))  # left by earlier runs on this bench Redis
    if stale:
        rclient.delete(*stale)

    async def main():
        ready = asyncio.Event()
        agents = asyncio.create_task(_agents(server.url, keys, ids, received, ready))
        ready_task = asyncio.create_task(ready.wait())
        await asyncio.wait({agents, ready_task}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
        if agents.done():
            agents.result()  # raises what went wrong
        if not ready.is_set():
            raise RuntimeError("requests not created in 300 s")
        deadline = time.monotonic() + 60
        while _waiting_count(rclient, ids) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        waiting = _waiting_count(rclient, ids)
        threads = _threads(server.proc.pid)
        with open(ids_path, "w") as fh:
            json.dump(sorted(ids), fh)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "-c", DECIDE.format(ids_path=ids_path, rate=DECISIONS_PER_S),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=bench_env(), cwd=str(ROOT))
        out, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(err.decode()[-2000:])
        await asyncio.wait_for(agents, timeout=120)
        return waiting, threads, _marker(out.decode(), "STAMPS")

    waiting, threads, stamps = asyncio.run(main())
    rclient.close()
    latencies = []
    wrong = 0
    for pk, (at, body) in received.items():
        if body.get("status") != "approved" or body.get("arguments") != {"amount": 1}:
            wrong += 1
            continue
        latencies.append((at - stamps[str(pk)]) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    notes = (f"{len(latencies)} of {len(keys)} agents got the edited arguments; {waiting} waiting at once on one "
             f"server process when deciding began; decisions paced at {DECISIONS_PER_S}/s; max "
             f"{latencies[-1]:.1f} ms; {wrong} wrong/undecided answers")
    return [
        Result(f"approvals{label}: decision to waiting agent p50", "ms", [p50], "< 100", notes),
        Result(f"approvals{label}: decision to waiting agent p99", "ms", [p99], "< 100", notes),
        Result(f"approvals{label}: agents waiting at once (one process)", "agents", [float(waiting)],
               f">= {WAITERS}", f"server threads while all {waiting} waited: {threads}"),
    ]


def _load_pending(n: int, due: int) -> None:
    """COPY ``n`` pending requests into the bench database; ``due`` of them with a due escalation step."""
    import psycopg

    snapshot = json.dumps({"matrix_id": None, "breach_action": "keep_pending_and_page", "levels": [
        {"order": 0, "after_minutes": 0, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
         "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
        {"order": 1, "after_minutes": 600, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
         "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
    ]})
    columns = ["agent_id", "action", "arguments", "arguments_digest", "summary", "risk", "trace_id", "span_id",
               "resource", "prompt_name", "prompt_version", "status", "reason", "queue_id", "required_approvals",
               "due_at", "decider", "final_digest", "escalation_snapshot", "breach_action", "escalation_epoch",
               "escalation_started_at", "escalation_step", "next_escalation_at", "created_at", "execution_error"]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        agent_id = conn.execute("SELECT id FROM agents_agent ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO approvals_queue (name, description, created_at) VALUES ('bench', '', now()) "
                     "ON CONFLICT DO NOTHING")
        queue_id = conn.execute("SELECT id FROM approvals_queue WHERE name = 'bench'").fetchone()[0]
        users = [r[0] for r in conn.execute("SELECT id FROM auth_user ORDER BY id LIMIT 3").fetchall()]
        for uid in users:
            conn.execute("INSERT INTO approvals_queue_members (queue_id, user_id) VALUES (%s, %s) "
                         "ON CONFLICT DO NOTHING", [queue_id, uid])
        now = datetime.now(UTC)
        started = now - timedelta(minutes=3)
        with conn.cursor() as cur:
            with cur.copy(f"COPY approvals_approvalrequest ({', '.join(columns)}) FROM STDIN") as copy:
                for i in range(n):
                    # `due` rows have level 0 not fired yet (due 3 min ago); the rest fired it, level 1 is hours away.
                    step = 0 if i < due else 1
                    next_at = started if step == 0 else started + timedelta(minutes=600)
                    copy.write_row([
                        agent_id, "refunds.issue", json.dumps({"amount": i}), "0" * 64, "bench", "high", "", "",
                        f"crm:customer:{i}", "", "", "pending", "", queue_id, 1,
                        now + timedelta(minutes=30), "", "", snapshot, "keep_pending_and_page", 0, started, step,
                        next_at, started, "",
                    ])
        conn.execute("VACUUM ANALYZE approvals_approvalrequest")


def _sweep() -> list[Result]:
    _load_pending(PENDING, DUE_PER_SWEEP * SWEEPS)
    out = manage("shell", "-c", SWEEP.format(sweeps=SWEEPS)).stdout
    data = _marker(out, "SWEEP")
    samples = [s * 1000 for s, _r in data["samples"]]
    fired = [r["fired"] for _s, r in data["samples"]]
    return [
        Result("approvals: escalation sweep, 100k pending, 500 due", "ms", samples, "< 2000",
               f"fired per sweep {fired}; each firing = ledger row + 3 in-app deliveries + cursor advance"),
        Result("approvals: escalation sweep, 100k pending, none due", "ms", [data["idle"][0] * 1000], "< 2000",
               "plan: " + data["plan"][:200]),
    ]


def run() -> list[Result]:
    reset_database()
    keys = _marker(manage("shell", "-c", SETUP_AGENTS.format(n=WAITERS)).stdout, "KEYS")
    results = []
    # Through Django's handler (manage.py serve), then through the ASGI long-poll fast path.
    with LoggingServer(port=8791) as server:
        results += _latency(server, keys, "")
    try:
        with LoggingServer(port=8792, factory="approvals.asgi:with_long_poll") as server:
            results += _latency(server, keys, " (ASGI fast path)")
    except Exception as exc:  # noqa: BLE001 - keep the other figures
        print(f"ASGI fast path latency could not be measured: {exc!r}", flush=True)
    results += _sweep()
    return results

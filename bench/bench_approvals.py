"""Approvals benchmarks, from a separate process against PostgreSQL + Redis.

1. Decision-to-agent latency with 500 agents waiting at once on ONE server process:
   each agent creates a request and holds ``GET /api/v1/approvals/{id}?wait=60``
   (httpx async); once all 500 are held by the server (each past its first read
   of the row), another process decides them (the real ``decide_request``, 50 a
   second) and stamps the moment it called it; the agent stamps when its answer
   arrives. Same clock. Measured on the console's ASGI application (``console.asgi:application``, the long-poll
   fast path included, as ``manage.py serve`` runs it) and, for comparison, on
   Django's handler alone (the django-ninja async view).

   Each server runs wrapped by ``traced()`` below (bench only): it stamps when
   the server's waiter listener received the decision's message and when the
   answer's body was handed to the server, and counts the requests it holds.
   The decider stamps the commit (when the commit hooks start) and the end of
   the waiters' notification. The notes give p50/p99 of each stage, so a slow
   tail says where it comes from.
2. Escalation sweep over 100,000 pending requests (SQL-loaded), 500 of them due:
   the time of ``approvals.jobs.sweep`` measured inside a ``manage.py shell`` process.

Run: ``.venv/bin/python -m bench approvals`` (set BENCH_DATABASE_URL / BENCH_REDIS_URL to
use other databases than the shared bench ones, BENCH_APPROVALS_PORT for other ports than
8791 and 8792).
"""

import asyncio
import json
import os
import sys
import time

from bench.common import (ROOT, WORK, Result, Server, bench_env, load_average, manage, percentile, port_is_free,
                          reset_database)

WAITERS = 500
DECISIONS_PER_S = 50
CREATE_CONCURRENCY = 16
PENDING = 100_000
DUE_PER_SWEEP = 500
SWEEPS = 3
PORT = int(os.environ.get("BENCH_APPROVALS_PORT", "8791"))

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
from django.db.backends.base.base import BaseDatabaseWrapper
from approvals import live
from approvals.services import decide_request
admin = get_user_model().objects.get(username="bench-admin")
ids = json.load(open({ids_path!r}))
stamps = {{}}
current = {{}}
run_hooks = BaseDatabaseWrapper.run_and_clear_commit_hooks
def stamped_hooks(self):
    current.setdefault("commit", time.time())  # the transaction has committed; its on-commit hooks start
    return run_hooks(self)
BaseDatabaseWrapper.run_and_clear_commit_hooks = stamped_hooks
notify = live.notify_waiters
def stamped_notify(*args, **kwargs):
    current["notify"] = time.time()
    try:
        return notify(*args, **kwargs)
    finally:
        current["notified"] = time.time()
live.notify_waiters = stamped_notify
gap = 1.0 / {rate}
next_at = time.monotonic()
for pk in ids:
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    next_at += gap
    current.clear()
    current["call"] = time.time()
    decide_request(request_id=pk, reviewer=admin, verdict="modify", reason="bench", arguments={{"amount": 1}})
    current["returned"] = time.time()
    stamps[pk] = dict(current)
print("STAMPS=" + json.dumps(stamps))
"""


# --- the server side of the measurement (imported by the server process through the factories) -------------

_WAIT_PATH = r"^/api/v1/approvals/(\d+)/?$"


def traced(app):
    """``app`` with stamps per waiting request: listener receive, answer sent; ``GET /__bench/trace`` returns them."""
    import re

    trace: dict[int, dict] = {}
    held = set()
    ready = set()  # held requests whose first read is done: they wait on the listener now
    path = re.compile(_WAIT_PATH)

    def seen(pk, message=None):
        trace.setdefault(pk, {}).setdefault("received", time.time())

    def hook_listener():
        from approvals import waiters

        if hasattr(waiters, "observe"):
            waiters.observe = seen
            hook_first_read(waiters)
            return
        # Before the waiters had a pub/sub listener: stamp what their channel-layer receive returns.
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None or getattr(layer, "_bench_traced", False):
            return
        receive = layer.receive

        async def stamped_receive(channel):
            message = await receive(channel)
            if channel.startswith("approval-waiters") and "id" in message:
                seen(int(message["id"]))
            return message

        layer.receive, layer._bench_traced = stamped_receive, True

    def hook_first_read(waiters):
        """Mark a request ``ready`` once its waiter's first read returned (Django's handler may still be
        working through 500 arrivals when they are all held)."""
        wait_until_decided = waiters.wait_until_decided
        if getattr(wait_until_decided, "_bench_traced", False):
            return

        async def stamped(pk, wait, load, *args, **kwargs):
            async def load_and_mark():
                result = await load()
                ready.add(pk)
                return result

            try:
                return await wait_until_decided(pk, wait, load_and_mark, *args, **kwargs)
            finally:
                ready.discard(pk)

        stamped._bench_traced = True
        waiters.wait_until_decided = stamped

    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == "/__bench/trace":
            body = json.dumps({"held": len(held), "ready": len(ready), "trace": trace}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        match = path.match(scope["path"])
        if not match or b"wait=" not in scope.get("query_string", b""):
            return await app(scope, receive, send)
        hook_listener()
        pk = int(match[1])

        async def stamped_send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                trace.setdefault(pk, {})["answered"] = time.time()
                held.discard(pk)
            await send(message)

        held.add(pk)
        try:
            await app(scope, receive, stamped_send)
        finally:
            held.discard(pk)

    return wrapper


def console_app():
    """``uvicorn --factory``: the console's own ASGI application (what ``manage.py serve`` runs), traced."""
    from console.asgi import application

    return traced(application)


def django_only_app():
    """``uvicorn --factory``: HTTP through Django's handler alone (no long-poll fast path), traced."""
    from channels.routing import ProtocolTypeRouter

    from console import asgi

    return traced(ProtocolTypeRouter({"http": asgi.django_asgi_app, "lifespan": asgi.lifespan}))


# --- the driver ----------------------------------------------------------------------------------------------


class FactoryServer(Server):
    """``bench.common.Server`` serving an ASGI app factory under uvicorn, stderr in a file."""

    def __init__(self, port: int, factory: str):
        super().__init__(port=port)
        self.factory = factory

    def __enter__(self):
        import subprocess

        import httpx

        port_is_free(self.port, "BENCH_APPROVALS_PORT")
        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "uvicorn", "--factory", self.factory, "--port", str(self.port),
                   "--lifespan", "on", "--log-level", "warning"]
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "console.settings"}
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"console server did not start; see {self.log_path}")


def _marker(stdout: str, name: str):
    for line in stdout.splitlines():
        if line.startswith(name + "="):
            return json.loads(line[len(name) + 1:])
    raise RuntimeError(f"no {name} in output: {stdout[-2000:]}")


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


def _server_trace(url: str) -> dict:
    import httpx

    return httpx.get(url + "/__bench/trace", timeout=30).json()


def _stage(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    return f"{percentile(samples, 50):.1f}/{percentile(samples, 99):.1f}/{max(samples):.1f}"


def _latency(server: Server, keys: list[str], label: str) -> list[Result]:
    ids: list[int] = []
    received: dict[int, tuple] = {}
    WORK.mkdir(parents=True, exist_ok=True)
    ids_path = str(WORK / f"approval_ids-{server.port}.json")

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
        held = 0
        while time.monotonic() < deadline:
            state = await asyncio.to_thread(_server_trace, server.url)
            held = state["held"]
            if held >= len(ids) and state.get("ready", held) >= len(ids):  # every waiter past its first read
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # let the server settle after the last arrivals
        threads = _threads(server.proc.pid)
        with open(ids_path, "w") as fh:
            json.dump(sorted(ids), fh)
        load = load_average()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "-c", DECIDE.format(ids_path=ids_path, rate=DECISIONS_PER_S),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=bench_env(), cwd=str(ROOT))
        out, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(err.decode()[-2000:])
        await asyncio.wait_for(agents, timeout=120)
        return held, threads, load, _marker(out.decode(), "STAMPS")

    held, threads, load, stamps = asyncio.run(main())
    trace = {int(k): v for k, v in _server_trace(server.url)["trace"].items()}
    latencies, from_commit = [], []
    stages = {"call to commit": [], "commit to notified": [], "notified to listener": [],
              "listener to answer sent": [], "answer sent to agent": []}
    wrong = 0
    for pk, (at, body) in received.items():
        if body.get("status") != "approved" or body.get("arguments") != {"amount": 1}:
            wrong += 1
            continue
        marks = stamps[str(pk)]
        latencies.append((at - marks["call"]) * 1000)
        if "commit" in marks:
            from_commit.append((at - marks["commit"]) * 1000)
            stages["call to commit"].append((marks["commit"] - marks["call"]) * 1000)
        server_marks = trace.get(pk, {})
        if "notified" in marks and "commit" in marks:
            stages["commit to notified"].append((marks["notified"] - marks["commit"]) * 1000)
        if "received" in server_marks and "notify" in marks:
            stages["notified to listener"].append((server_marks["received"] - marks["notify"]) * 1000)
            if "answered" in server_marks:
                stages["listener to answer sent"].append((server_marks["answered"] - server_marks["received"]) * 1000)
        if "answered" in server_marks:
            stages["answer sent to agent"].append((at - server_marks["answered"]) * 1000)
    latencies.sort()
    slow = sum(1 for v in latencies if v > 1000)
    breakdown = "; ".join(f"{name} {_stage(v)}" for name, v in stages.items())
    notes = (f"{len(latencies)} of {len(keys)} agents got the edited arguments; {held} held at once on one "
             f"server process when deciding began; decisions paced at {DECISIONS_PER_S}/s; max "
             f"{latencies[-1]:.1f} ms; {slow} over 1 s; {wrong} wrong/undecided answers; from the commit "
             f"p50/p99 {_stage(from_commit)} ms (p50/p99/max); stages in ms (p50/p99/max; the notification "
             f"starts inside the commit hooks): {breakdown}; {load} when deciding began")
    print(f"   {label or 'console'}: {notes}", flush=True)
    return [
        Result(f"approvals{label}: decision to waiting agent p50", "ms", [percentile(latencies, 50)], "< 100", notes),
        Result(f"approvals{label}: decision to waiting agent p99", "ms", [percentile(latencies, 99)], "< 100", notes),
        Result(f"approvals{label}: agents waiting at once (one process)", "agents", [float(held)],
               f">= {WAITERS}", f"server threads while all {held} waited: {threads}"),
    ]


LOAD_PENDING = """
import json
from datetime import timedelta
from django.db import connection
from django.utils import timezone
from agents.models import Agent
from approvals.models import ApprovalRequest, Queue
from django.contrib.auth import get_user_model
snapshot = json.loads({snapshot!r})
queue, _ = Queue.objects.get_or_create(name="bench")
queue.members.add(*get_user_model().objects.order_by("id")[:3])
now = timezone.now()
started = now - timedelta(minutes=3)
template = ApprovalRequest.objects.create(
    agent=Agent.objects.order_by("id").first(), action="refunds.issue", arguments={{"amount": 0}},
    arguments_digest="0" * 64, summary="bench", risk="high", resource="crm:customer:template", status="pending",
    queue=queue, due_at=now + timedelta(minutes=30), escalation_snapshot=snapshot,
    breach_action="keep_pending_and_page", escalation_started_at=started, escalation_step=1,
    next_escalation_at=started + timedelta(minutes=600), created_at=started)
# Copy the template row n times in SQL, so columns added later get the template's values.
with connection.cursor() as cur:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'approvals_approvalrequest' "
                "AND column_name <> 'id' ORDER BY ordinal_position")
    columns = [r[0] for r in cur.fetchall()]
    overrides = {{
        "arguments": "jsonb_build_object('amount', g)",
        "resource": "'crm:customer:' || g",
        # `due` rows have level 0 not fired yet (due 3 min ago); the rest fired it, level 1 is hours away.
        "escalation_step": "CASE WHEN g <= %(due)s THEN 0 ELSE 1 END",
        "next_escalation_at": "CASE WHEN g <= %(due)s THEN %(started)s ELSE next_escalation_at END",
    }}
    select = ", ".join(overrides.get(c, f'"{{c}}"') for c in columns)
    cur.execute(f"INSERT INTO approvals_approvalrequest ({{', '.join(chr(34) + c + chr(34) for c in columns)}}) "
                f"SELECT {{select}} FROM approvals_approvalrequest, generate_series(1, %(n)s) g WHERE id = %(id)s",
                {{"n": {n}, "due": {due}, "started": started, "id": template.pk}})
    cur.execute("VACUUM ANALYZE approvals_approvalrequest")
print("LOADED=" + json.dumps(ApprovalRequest.objects.filter(status="pending").count()))
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

SNAPSHOT = {"matrix_id": None, "breach_action": "keep_pending_and_page", "levels": [
    {"order": 0, "after_minutes": 0, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
     "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
    {"order": 1, "after_minutes": 600, "repeat_count": 0, "repeat_interval_minutes": 10, "user_ids": [],
     "group_ids": [], "queue_reviewers": True, "email": False, "webhook_url": "", "webhook_format": "generic"},
]}


def _sweep() -> list[Result]:
    out = manage("shell", "-c", LOAD_PENDING.format(snapshot=json.dumps(SNAPSHOT), n=PENDING,
                                                     due=DUE_PER_SWEEP * SWEEPS), check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    pending = _marker(out.stdout, "LOADED")
    out = manage("shell", "-c", SWEEP.format(sweeps=SWEEPS)).stdout
    data = _marker(out, "SWEEP")
    samples = [s * 1000 for s, _r in data["samples"]]
    fired = [r["fired"] for _s, r in data["samples"]]
    return [
        Result("approvals: escalation sweep, 100k pending, 500 due", "ms", samples, "< 2000",
               f"{pending} pending; fired per sweep {fired}; each firing = ledger row + 3 in-app deliveries + "
               f"cursor advance"),
        Result("approvals: escalation sweep, 100k pending, none due", "ms", [data["idle"][0] * 1000], "< 2000",
               "plan: " + data["plan"][:200]),
    ]


def run() -> list[Result]:
    reset_database()
    keys = _marker(manage("shell", "-c", SETUP_AGENTS.format(n=WAITERS)).stdout, "KEYS")
    results = []
    # The console's application (long-poll fast path included), then Django's handler alone for comparison.
    for port, factory, label in ((PORT, "bench.bench_approvals:console_app", ""),
                                 (PORT + 1, "bench.bench_approvals:django_only_app", " (Django handler only)")):
        if label and os.environ.get("BENCH_APPROVALS_DJANGO_ONLY", "1") == "0":
            continue
        try:
            with FactoryServer(port=port, factory=factory) as server:
                results += _latency(server, keys, label)
        except Exception as exc:  # noqa: BLE001 - keep the other figures
            if not label:
                raise
            print(f"approvals{label}: latency could not be measured: {exc!r}", flush=True)
    if os.environ.get("BENCH_APPROVALS_SWEEP", "1") != "0":
        results += _sweep()
    return results

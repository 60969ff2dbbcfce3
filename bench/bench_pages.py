"""Page times: the runs list over 1,000,000 runs, a run of 5,000 spans, the review queue with 10,000 pending.

Data goes straight into PostgreSQL with ``INSERT ... SELECT generate_series``
(not through the API): runs spread over 20 agents, one run with a realistic
5,000-span tree (a root, 100 agent steps, LLM and tool calls under them with
1-2 KB of text), 10,000 pending approval requests over 4 queues. Then the
console is served in production mode and a logged-in Admin (session cookie
from the login form) GETs each page over loopback with httpx from this
process: after warm-up, ``BENCH_PAGES_REQUESTS`` timed requests each; the
figure is the p95 of the total request time (the console sends no
Server-Timing header, so there is no separate server-side figure).
"""

import os
import statistics
import time

import psycopg

from bench.common import (Result, Server, bench_env, create_staff, database_url, load_average, login, manage,
                          percentile, port_is_free, reset_named_database)

DB_URL = os.environ.get("BENCH_PAGES_DATABASE_URL", database_url("pages"))
PORT = int(os.environ.get("BENCH_PAGES_PORT", "18481"))
RUNS = int(os.environ.get("BENCH_PAGES_RUNS", "1000000"))
SPANS = int(os.environ.get("BENCH_PAGES_SPANS", "5000"))
PENDING = int(os.environ.get("BENCH_PAGES_PENDING", "10000"))
REQUESTS = int(os.environ.get("BENCH_PAGES_REQUESTS", "30"))
WARMUP = 5
REUSE = os.environ.get("BENCH_PAGES_REUSE") == "1"  # development only: skip re-creating the data
AGENTS = 20

SETUP_AGENTS = """
from agents import services
for i in range({n}):
    services.create_agent(name=f"bench-agent-{{i:02d}}", actor="system:bench")
"""

RUNS_SQL = """
INSERT INTO traces_run (trace_id, agent_id, name, task, status, root_ended, has_pending_approval, session_id,
    service_name, started_at, ended_at, duration_ms, span_count, error_count, input_tokens, output_tokens,
    total_tokens, cost, prompt_name, prompt_version, last_seq, created_at, updated_at)
SELECT md5('run' || g), (SELECT array_agg(id ORDER BY id) FROM agents_agent)[1 + g %% {agents}],
    'invoke_agent support-bot', 'Answer ticket #' || (1000 + g %% 9000),
    CASE WHEN g %% 50 = 0 THEN 'error' WHEN g %% 97 = 0 THEN 'running' ELSE 'ok' END,
    g %% 97 <> 0, false, 'conv-' || (g %% 100000), 'support-bot',
    now() - make_interval(secs => ({n} - g) * 2.0), now() - make_interval(secs => ({n} - g) * 2.0 - 30),
    30000, 20, CASE WHEN g %% 50 = 0 THEN 1 ELSE 0 END, 12000, 3000, 15000, 0.045, 'support', '7', 20,
    now() - make_interval(secs => ({n} - g) * 2.0), now() - make_interval(secs => ({n} - g) * 2.0)
FROM generate_series(1, {n}) g
"""

# One run with a tree: span 0 the root, 1..100 agent steps under it, the rest LLM / tool calls under the steps.
SPANS_SQL = """
INSERT INTO traces_span (run_id, span_id, parent_span_id, name, kind, status, status_message, start_time, end_time,
    duration_ms, operation, model, provider, input_tokens, output_tokens, cache_tokens, reasoning_tokens, cost,
    tool_name, tool_arguments, input_text, output_text, attributes, events, links, prompt_name, prompt_version,
    redaction_count, seq, received_at)
SELECT %(run)s, lpad(to_hex(g + 1), 16, '0'),
    CASE WHEN g = 0 THEN '' WHEN g <= 100 THEN lpad(to_hex(1), 16, '0') ELSE lpad(to_hex(2 + g %% 100), 16, '0') END,
    CASE WHEN g = 0 THEN 'invoke_agent support-bot' WHEN g <= 100 THEN 'step ' || g
         WHEN g %% 2 = 0 THEN 'chat gpt-4o' ELSE 'execute_tool lookup_order' END,
    CASE WHEN g = 0 THEN 'agent' WHEN g <= 100 THEN 'agent' WHEN g %% 2 = 0 THEN 'llm' ELSE 'tool' END,
    CASE WHEN g %% 37 = 0 THEN 'error' ELSE 'ok' END, CASE WHEN g %% 37 = 0 THEN 'tool timed out' ELSE '' END,
    %(start)s::timestamptz + make_interval(secs => g * 0.1),
    %(start)s::timestamptz + make_interval(secs => g * 0.1 + 0.08), 80.0,
    CASE WHEN g %% 2 = 0 THEN 'chat' ELSE 'execute_tool' END,
    CASE WHEN g %% 2 = 0 THEN 'gpt-4o' ELSE '' END, CASE WHEN g %% 2 = 0 THEN 'openai' ELSE '' END,
    CASE WHEN g %% 2 = 0 THEN 1200 ELSE 0 END, CASE WHEN g %% 2 = 0 THEN 300 ELSE 0 END, 0, 0,
    CASE WHEN g %% 2 = 0 THEN 0.006 ELSE 0 END,
    CASE WHEN g %% 2 = 1 THEN 'lookup_order' ELSE '' END,
    CASE WHEN g %% 2 = 1 THEN jsonb_build_object('order_id', 10000 + g, 'reason', repeat('refund ', 15)) END,
    CASE WHEN g %% 2 = 0 THEN repeat('the customer asked about order refund policy ', 30) ELSE '' END,
    CASE WHEN g %% 2 = 0 THEN repeat('the refund was approved within business days ', 25)
         ELSE '{{"status": "shipped"}}' END,
    jsonb_build_object('gen_ai.operation.name', CASE WHEN g %% 2 = 0 THEN 'chat' ELSE 'execute_tool' END,
                       'gen_ai.request.temperature', 0.2, 'service.name', 'support-bot'),
    '[]'::jsonb, '[]'::jsonb, 'support', '7', 0, g + 1, now()
FROM generate_series(0, %(n)s - 1) g
"""

PENDING_SQL = """
INSERT INTO approvals_approvalrequest (agent_id, action, arguments, arguments_digest, summary, risk, trace_id,
    span_id, resource, prompt_name, prompt_version, status, reason, queue_id, required_approvals, due_at, decider,
    final_digest, escalation_snapshot, breach_action, escalation_epoch, escalation_started_at, escalation_step,
    next_escalation_at, created_at, execution_error, conflict_state, conflict_rule, arbitration, arbitration_reason)
SELECT (SELECT array_agg(id ORDER BY id) FROM agents_agent)[1 + g %% {agents}], 'refunds.issue',
    jsonb_build_object('amount', g %% 2000, 'customer', 'crm:customer:' || g, 'currency', 'EUR'), md5('a' || g) ||
    md5('b' || g), 'Refund order ' || (10000 + g) || ' for a delayed shipment',
    (ARRAY['low', 'medium', 'high', 'critical'])[1 + g %% 4], '', '', 'crm:customer:' || g, 'support', '7',
    'pending', '', (SELECT array_agg(id ORDER BY id) FROM approvals_queue WHERE name LIKE 'bench-%%')[1 + g %% 4], 1,
    now() + make_interval(mins => 10 + g %% 1440), '', '',
    '{{"matrix_id": null, "breach_action": "keep_pending_and_page", "levels": []}}'::jsonb, 'keep_pending_and_page',
    0, now(), 0, now() + interval '1 day', now() - make_interval(secs => g), '', '', '', '', ''
FROM generate_series(1, {n}) g
"""


def load_data(env) -> str:
    """Fill the pages database; returns the trace id of the big run."""
    manage("shell", "-c", SETUP_AGENTS.format(n=AGENTS), env=env)
    with psycopg.connect(DB_URL, autocommit=True) as db:
        started = time.perf_counter()
        # Bulk load with the secondary indexes and the trace id constraint dropped, then build them once (sorted).
        constraints = db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'traces_run'::regclass "
            "AND contype = 'u'").fetchall()
        indexes = db.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'traces_run' AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)").fetchall()
        for name, _ in constraints:
            db.execute(f'ALTER TABLE traces_run DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        db.execute(RUNS_SQL.format(n=RUNS, agents=AGENTS).replace("%%", "%"))
        db.execute("SET maintenance_work_mem = '256MB'")
        for name, definition in constraints:
            db.execute(f'ALTER TABLE traces_run ADD CONSTRAINT "{name}" {definition}')
        for _name, definition in indexes:
            db.execute(definition)
        agent = db.execute("SELECT id FROM agents_agent ORDER BY id LIMIT 1").fetchone()[0]
        trace_id = "f" * 32
        run_id = db.execute(
            "INSERT INTO traces_run (trace_id, agent_id, name, task, status, root_ended, has_pending_approval, "
            "session_id, service_name, started_at, ended_at, duration_ms, span_count, error_count, input_tokens, "
            "output_tokens, total_tokens, cost, prompt_name, prompt_version, last_seq, created_at, updated_at) "
            "VALUES (%s, %s, 'invoke_agent support-bot', 'Big run', 'ok', true, false, '', 'support-bot', "
            "now() - interval '1 hour', now() - interval '1 hour' + make_interval(secs => %s * 0.1 + 1), "
            "%s * 100, %s, %s, 0, 0, 0, 0, 'support', '7', %s, now(), now()) RETURNING id",
            [trace_id, agent, SPANS, SPANS, SPANS, SPANS // 37 + 1, SPANS]).fetchone()[0]
        start = db.execute("SELECT now() - interval '1 hour'").fetchone()[0]
        db.execute(SPANS_SQL, {"run": run_id, "n": SPANS, "start": start})
        for i in range(4):
            db.execute("INSERT INTO approvals_queue (name, description, created_at, conflict_rule) "
                       "VALUES (%s, '', now(), 'ask_human')",
                       [f"bench-{i}"])
        db.execute(PENDING_SQL.format(n=PENDING, agents=AGENTS).replace("%%", "%"))
        for table in ("traces_run", "traces_span", "approvals_approvalrequest"):
            db.execute(f"VACUUM ANALYZE {table}")
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("traces_run", "traces_span", "approvals_approvalrequest")]
        print(f"   loaded {counts[0]:,} runs, {counts[1]:,} spans, {counts[2]:,} requests "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
    if counts[0] < RUNS or counts[1] < SPANS or counts[2] < PENDING:
        raise RuntimeError(f"data not loaded: {counts}")
    return trace_id


BREAKDOWN = """
import json, statistics, time
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
client = Client()
client.force_login(get_user_model().objects.get(username="bench-admin"))
out = {{}}
for path in {paths!r}:
    client.get(path)
    totals, sql, count = [], [], 0
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            client.get(path)
            totals.append(time.perf_counter() - started)
        sql.append(sum(float(q["time"]) for q in queries.captured_queries))
        count = len(queries.captured_queries)
    out[path] = [statistics.median(totals) * 1000, statistics.median(sql) * 1000, count]
print("BREAKDOWN=" + json.dumps(out))
"""


def breakdown(env, paths) -> dict:
    """Server-side time without the network: Django's test client in a ``manage.py shell`` on the same data,
    median of 5, with the SQL time and query count (the console has no Server-Timing header)."""
    import json

    out = manage("shell", "-c", BREAKDOWN.format(paths=list(paths)),
                 env={**env, "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost"}, check=False).stdout
    for line in out.splitlines():
        if line.startswith("BREAKDOWN="):
            return json.loads(line[len("BREAKDOWN="):])
    return {}


def _loaded() -> bool:
    try:
        with psycopg.connect(DB_URL) as db:
            runs = db.execute("SELECT count(*) FROM traces_run").fetchone()[0]
            pending = db.execute("SELECT count(*) FROM approvals_approvalrequest").fetchone()[0]
    except psycopg.Error:
        return False
    return runs > RUNS and pending >= PENDING


def time_page(client, path: str, expect: str) -> tuple[list[float], int]:
    for _ in range(WARMUP):
        answer = client.get(path)
        if answer.status_code != 200 or expect not in answer.text:
            raise RuntimeError(f"GET {path}: {answer.status_code}, {expect!r} not in the page")
    samples, size = [], 0
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code}")
        size = len(answer.content)
    return samples, size


def run() -> list[Result]:
    port_is_free(PORT, "BENCH_PAGES_PORT")
    env = bench_env(DATABASE_URL=DB_URL)
    if REUSE and _loaded():
        trace_id = "f" * 32  # development: keep the data of the previous run
    else:
        reset_named_database(DB_URL, env)
        trace_id = load_data(env)
    create_staff(env, "bench-admin", ("Admin",))
    pages = [
        (f"runs list, {RUNS:,} runs", "/runs/", "f" * 32, "< 150"),
        (f"run page, {SPANS:,} spans", f"/runs/{trace_id}/", "invoke_agent support-bot", "< 300"),
        (f"review queue, {PENDING:,} pending (Admin)", "/approvals/", "Refund order", "< 100"),
    ]
    results = []
    with Server(port=PORT, env=env) as server:
        client = login(server.url)
        measured = []
        for label, path, expect, target in pages:
            samples, size = time_page(client, path, expect)
            measured.append((label, path, target, samples, size, load_average()))
        client.close()
        peak = server.peak_rss_mib()
    inside = breakdown(env, [path for _l, path, _e, _t in pages])
    for label, path, target, samples, size, load in measured:
        server_side = ""
        if path in inside:
            total, sql, count = inside[path]
            server_side = (f"server side (Django test client in-process, median of 5): {total:,.0f} ms, of which "
                           f"SQL {sql:,.0f} ms in {count} queries; ")
        results.append(Result(
            f"pages: {label} p95", "ms", [percentile(samples, 95)], target,
            f"GET {path} as Admin over loopback, {len(samples)} requests after {WARMUP} warm-up: "
            f"p50 {statistics.median(samples):,.0f} ms, max {max(samples):,.0f} ms, {size / 1024:,.0f} KiB; "
            f"total request time (no Server-Timing header); {server_side}1 server process, peak RSS {peak} MiB; {load}",
            extra={"rss_mib": peak, "load": load}))
    return results

"""Anomaly detection latency: from the offending span's POST to the incident row, under background load.

Serves the console in production mode on its own database; one driver thread
keeps ~``BENCH_ANOMALY_RATE`` spans/s of realistic, varied agent spans flowing
(``bench_ingest``'s span factory, batches of 100) while a second agent loops:
each trial starts a new run, sends four identical tool calls, then — clock
started — the fifth, which crosses the loop threshold. The time is until the
incident row is visible to another connection (polled every 5 ms with psycopg).
"""

import json
import os
import statistics
import time

import httpx
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.bench_ingest import _kv, build_bodies
from bench.common import PG_URL, Result, Server, bench_env, load_summary, manage, paced_load, reset_named_database

DB_URL = os.environ.get("BENCH_ANOMALY_DATABASE_URL", PG_URL.rsplit("/", 1)[0] + "/console_bench_anomaly")
PORT = int(os.environ.get("BENCH_ANOMALY_PORT", "18475"))
RATE = int(os.environ.get("BENCH_ANOMALY_RATE", "1000"))  # background spans/s
TRIALS = int(os.environ.get("BENCH_ANOMALY_TRIALS", "60"))
DRIVERS = 4  # paced background connections
TIMEOUT_S = 10.0


def _loop_body(trace_id: bytes, parent: bytes, spans: int, start_ns: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "loop-bot"))
    ss = rs.scope_spans.add()
    for i in range(spans):
        span = trace_pb2.Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=parent,
                              name="execute_tool lookup_order", start_time_unix_nano=start_ns + i * 10**6,
                              end_time_unix_nano=start_ns + i * 10**6 + 500_000)
        span.attributes.extend([_kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", "lookup_order"),
                                _kv("gen_ai.tool.call.arguments", json.dumps({"order": 42}))])
        ss.spans.append(span)
    return request.SerializeToString()


def run() -> list[Result]:
    env = bench_env(DATABASE_URL=DB_URL)
    reset_named_database(DB_URL, env)
    bg_key = manage("create_agent_key", "bench-agent", "--name", "bench", env=env).stdout.strip()
    loop_key = manage("create_agent_key", "loop-bot", "--name", "bench", env=env).stdout.strip()
    latencies, posts, missed = [], [], 0
    per_driver = max(RATE // DRIVERS * 60, 1000)  # a minute of fresh spans each, built before the clock starts
    bodies = [build_bodies(batch=100, total_spans=per_driver, seed=seed) for seed in range(DRIVERS)]
    with Server(port=PORT, env=env) as server, psycopg.connect(DB_URL, autocommit=True) as db:
        with paced_load(server.url, bg_key, RATE, bodies) as background, \
                httpx.Client(base_url=server.url, timeout=30,
                             headers={"Authorization": f"Bearer {loop_key}",
                                      "Content-Type": "application/x-protobuf"}) as client:
            time.sleep(3)  # let the load settle
            for _trial in range(TRIALS):
                trace_id, parent = os.urandom(16), os.urandom(8)
                start_ns = time.time_ns() - 60 * 10**9
                assert client.post("/v1/traces", content=_loop_body(trace_id, parent, 4, start_ns)).status_code == 200
                offending = _loop_body(trace_id, parent, 1, start_ns + 10 * 10**6)
                started = time.perf_counter()
                assert client.post("/v1/traces", content=offending).status_code == 200
                posts.append((time.perf_counter() - started) * 1000)
                while True:
                    row = db.execute("SELECT 1 FROM traces_incident WHERE trace_id = %s", (trace_id.hex(),)).fetchone()
                    elapsed = time.perf_counter() - started
                    if row:
                        latencies.append(elapsed * 1000)
                        break
                    if elapsed > TIMEOUT_S:
                        missed += 1
                        break
                    time.sleep(0.005)
                time.sleep(0.2)
        false_alarms = db.execute("SELECT count(*) FROM traces_incident i JOIN agents_agent a ON a.id = i.agent_id "
                                  "WHERE a.name = 'bench-agent'").fetchone()[0]
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    load = (f"{load_summary(background, RATE)}; "
            f"{TRIALS} looping runs, {missed} not detected within {TIMEOUT_S:.0f} s; "
            f"{false_alarms} incidents on the varied background agent; of which the offending POST's own "
            f"round trip (200 after commit) p50 {statistics.median(posts or [0]):,.0f} ms; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores during the run; "
            f"slowest {', '.join(f'{v:,.0f}' for v in ordered[-5:])} ms")
    return [
        Result("anomaly span->incident p50", "ms", [statistics.median(ordered)], notes=load),
        Result("anomaly span->incident p99", "ms", [p99], target="< 2000", notes=load),
        Result("anomaly false alarms on varied load", "incidents", [float(false_alarms)], target="<= 0"),
    ]

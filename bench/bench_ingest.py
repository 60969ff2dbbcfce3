"""OTLP ingest: spans/s persisted end to end on PostgreSQL, and spans lost.

Resets the bench database, serves the console in production mode, issues an
agent key with ``manage.py create_agent_key``, then drives ``POST /v1/traces``
with realistic protobuf agent spans (an agent root, LLM calls carrying 1-2 KB of
prompt and completion text, tool calls with JSON arguments) from several
keep-alive connections (the standard library's http.client) in threads of this process. Bodies are encoded
before the clock starts, so the figure is the console's, not the driver's.
Afterwards every acknowledged span must be in the database (counted with psql).

The notes' server CPU and PostgreSQL µs per span are CPU time of those processes, and they
rise with the machine's load: the same code measured 102 µs quiet and 133-153 µs at load
average 6-14 (other work on the 2 cores). Compare two versions of the code by alternating
runs under the same load (e.g. one from ``git archive HEAD`` in /tmp), never against a
figure from a quieter hour; ``BENCH_INGEST_SINGLE_REQUESTS=200`` shortens the batch-1 part.
"""

import http.client
import json
import os
import random
import subprocess
import threading
import time
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.common import PG_URL, Result, Server, bench_env, manage

# Its own database and port, so benchmarks of other areas running at the same time cannot disturb it.
DB_URL = os.environ.get("BENCH_INGEST_DATABASE_URL", PG_URL.rsplit("/", 1)[0] + "/console_bench_ingest")
PORT = int(os.environ.get("BENCH_INGEST_PORT", "18473"))

CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "8"))
# Two server processes: one process is bound to one core by the GIL, and the machine has two.
WORKERS = int(os.environ.get("BENCH_INGEST_WORKERS", "2"))
ROUNDS = int(os.environ.get("BENCH_INGEST_ROUNDS", "3"))
SPANS_BATCH_100 = int(os.environ.get("BENCH_INGEST_SPANS", "30000"))
REQUESTS_BATCH_1 = int(os.environ.get("BENCH_INGEST_SINGLE_REQUESTS", "2000"))

WORDS = ("the customer asked about order refund policy invoice shipping delay account balance payment card "
         "agent tool result context window summary escalation ticket priority response draft review approve "
         "reject because amount limit threshold within days business support email address verified").split()


def _kv(key, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _text(rng: random.Random, size: int) -> str:
    words, length = [], 0
    while length < size:
        word = rng.choice(WORDS)
        if rng.random() < 0.02:
            word = f"order {rng.randint(10000, 99999)} on 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


class SpanFactory:
    """Realistic agent runs: root agent span, then alternating LLM and tool spans."""

    def __init__(self, seed: int, spans_per_run: int = 20):
        self.rng = random.Random(seed)
        self.spans_per_run = spans_per_run
        self.now_ns = time.time_ns() - 3600 * 10**9
        self._run = None

    def _new_run(self):
        trace_id, root_id = self.rng.randbytes(16), self.rng.randbytes(8)
        self._run = {"trace_id": trace_id, "root_id": root_id, "left": self.spans_per_run, "t": self.now_ns}
        return self._span(kind="agent")

    def _span(self, *, kind: str) -> trace_pb2.Span:
        run, rng = self._run, self.rng
        start = run["t"]
        duration = rng.randint(5, 900) * 10**6
        run["t"] += duration + 10**6
        span = trace_pb2.Span(trace_id=run["trace_id"], name="", start_time_unix_nano=start,
                              end_time_unix_nano=start + duration, kind=trace_pb2.Span.SPAN_KIND_INTERNAL)
        attrs = []
        if kind == "agent":
            span.span_id = run["root_id"]
            span.name = "invoke_agent support-bot"
            span.end_time_unix_nano = start + 30 * 10**9
            attrs = [_kv("gen_ai.operation.name", "invoke_agent"), _kv("gen_ai.agent.name", "support-bot"),
                     _kv("console.task", "Answer ticket #%d" % rng.randint(1000, 9999)),
                     _kv("gen_ai.conversation.id", "conv-%d" % rng.randint(1, 10**6))]
        elif kind == "llm":
            span.span_id, span.parent_span_id = rng.randbytes(8), run["root_id"]
            span.name = "chat gpt-4o"
            prompt = [{"role": "system", "parts": [{"type": "text", "content": _text(rng, 300)}]},
                      {"role": "user", "parts": [{"type": "text", "content": _text(rng, rng.randint(700, 1400))}]}]
            answer = [{"role": "assistant", "parts": [{"type": "text", "content": _text(rng, rng.randint(500, 1200))}]}]
            attrs = [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                     _kv("gen_ai.request.model", "gpt-4o"), _kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
                     _kv("gen_ai.usage.input_tokens", rng.randint(300, 3000)),
                     _kv("gen_ai.usage.output_tokens", rng.randint(50, 800)),
                     _kv("gen_ai.request.temperature", 0.2),
                     _kv("gen_ai.input.messages", json.dumps(prompt)),
                     _kv("gen_ai.output.messages", json.dumps(answer)),
                     _kv("console.prompt.name", "support"), _kv("console.prompt.version", "7")]
        else:
            span.span_id, span.parent_span_id = rng.randbytes(8), run["root_id"]
            tool = rng.choice(["lookup_order", "refund", "send_email", "search_kb"])
            span.name = f"execute_tool {tool}"
            args = {"order_id": rng.randint(10000, 99999), "reason": _text(rng, 120),
                    "options": {"notify": True, "currency": "EUR", "amount": round(rng.random() * 500, 2)}}
            attrs = [_kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", tool),
                     _kv("gen_ai.tool.call.id", "call_%d" % rng.randint(1, 10**9)),
                     _kv("gen_ai.tool.call.arguments", json.dumps(args)),
                     _kv("gen_ai.tool.call.result", _text(rng, 200))]
            if rng.random() < 0.03:
                span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
                span.status.message = "tool timed out"
        span.attributes.extend(attrs)
        return span

    def next_span(self) -> trace_pb2.Span:
        if self._run is None or self._run["left"] <= 0:
            span = self._new_run()
        else:
            span = self._span(kind="llm" if self._run["left"] % 2 else "tool")
        self._run["left"] -= 1
        return span


def build_bodies(*, batch: int, total_spans: int, seed: int, runs_in_flight: int = 3) -> list[bytes]:
    """Protobuf bodies of ``batch`` spans, interleaving a few concurrent runs like a busy agent process."""
    factories = [SpanFactory(seed * 1000 + i) for i in range(runs_in_flight)]
    bodies = []
    made = 0
    while made < total_spans:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", "support-bot"), _kv("deployment.environment", "bench")])
        ss = rs.scope_spans.add()
        ss.scope.name = "bench.agent"
        n = min(batch, total_spans - made)
        ss.spans.extend(factories[(made // batch + i) % runs_in_flight].next_span() for i in range(n))
        made += n
        bodies.append(request.SerializeToString())
    return bodies


def drive(url: str, key: str, streams: list[list[tuple[bytes, int]]]):
    """One keep-alive connection per stream, each POSTing its (body, span count) list in order,
    as one agent process's exporter does. Returns (seconds, acknowledged spans, non-200 counts);
    503 and 429 are retried after Retry-After, as the stock exporter does."""
    lock = threading.Lock()
    acknowledged = [0]
    failures: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}

    def note(status):
        with lock:
            failures[status] = failures.get(status, 0) + 1

    def worker(stream):
        # The standard library's client: this driver shares the 2 cores with the server, and httpx
        # took 15 µs of CPU per span (a tenth of the machine) where http.client takes a few.
        parsed = urlsplit(url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        try:
            for body, count in stream:
                for _attempt in range(20):
                    try:
                        connection.request("POST", "/v1/traces", body=body, headers=headers)
                        response = connection.getresponse()
                        response.read()
                    except (OSError, http.client.HTTPException):
                        note(-1)
                        connection.close()  # reconnects on the next request
                        time.sleep(0.2)
                        continue
                    if response.status == 200:
                        with lock:
                            acknowledged[0] += count
                        break
                    note(response.status)
                    if response.status not in (429, 503):
                        break
                    time.sleep(float(response.getheader("Retry-After") or "1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(stream,)) for stream in streams]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, acknowledged[0], failures


def build_streams(*, batch: int, total_spans: int, seed: int, connections: int) -> list[list[tuple[bytes, int]]]:
    """Per connection, its own agent runs in protobuf bodies of ``batch`` spans."""
    per_connection = total_spans // connections
    return [[(body, _span_count(body)) for body in
             build_bodies(batch=batch, total_spans=per_connection, seed=seed * 100 + i)] for i in range(connections)]


def _span_count(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def reset_database(env) -> None:
    """Drop, re-create and migrate the ingest bench database (as bench.common.reset_database does)."""
    name = DB_URL.rsplit("/", 1)[1]
    admin = DB_URL.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True,
                   capture_output=True)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    manage("migrate", "-v0", env=env)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (uvicorn workers), from /proc."""
    from pathlib import Path

    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def _postgres_cpu_seconds() -> float:
    """User + system CPU of the PostgreSQL backends connected to the bench database (not other databases')."""
    from pathlib import Path

    ticks = os.sysconf("SC_CLK_TCK")
    marker = " " + DB_URL.rsplit("/", 1)[1] + " "
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker not in (proc / "cmdline").read_text() or not (proc / "cmdline").read_text().startswith(
                    "postgres:"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


def span_count() -> int:
    out = subprocess.run(["psql", DB_URL, "-tAc", "SELECT count(*) FROM traces_span"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip())


def _port_is_free(port: int) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is taken (another server?); set BENCH_INGEST_PORT") from exc


def run() -> list[Result]:
    _port_is_free(PORT)
    env = bench_env(DATABASE_URL=DB_URL)
    reset_database(env)
    key = manage("create_agent_key", "bench-agent", "--name", "bench", env=env).stdout.strip()
    rates_100, rates_1, lost_total, notes = [], [], 0, []
    cpu_per_span, pg_per_span, driver_per_span = {}, {}, {}
    with Server(port=PORT, workers=WORKERS, env=env) as server:
        # warm up: connections, pools, caches
        drive(server.url, key, build_streams(batch=100, total_spans=1600, seed=999, connections=CONNECTIONS))
        expected = span_count()
        for label, batch, total, rates in (("batch100", 100, SPANS_BATCH_100, rates_100),
                                           ("batch1", 1, REQUESTS_BATCH_1, rates_1)):
            for round_no in range(ROUNDS):
                streams = build_streams(batch=batch, total_spans=total, seed=round_no + batch,
                                        connections=CONNECTIONS)
                cpu_before, pg_before = _cpu_seconds(server.proc.pid), _postgres_cpu_seconds()
                driver_before = time.process_time()
                seconds, acked, failures = drive(server.url, key, streams)
                driver_per_span.setdefault(label, []).append((time.process_time() - driver_before) / max(acked, 1))
                cpu_per_span.setdefault(label, []).append((_cpu_seconds(server.proc.pid) - cpu_before) / max(acked, 1))
                pg_per_span.setdefault(label, []).append((_postgres_cpu_seconds() - pg_before) / max(acked, 1))
                expected += acked
                stored = span_count()
                lost_total += max(0, expected - stored)
                expected = stored
                rates.append(acked / seconds)
                if failures:
                    notes.append(f"{label} round {round_no}: non-200 answers {failures}")
        peak = server.peak_rss_mib()
    load = os.getloadavg()[0]
    common = (f"{CONNECTIONS} keep-alive connections, {WORKERS} server process(es), peak RSS {peak} MiB, "
              f"machine load average {load:.1f} at the end")

    def cpu(label):
        values = cpu_per_span.get(label) or [0]
        pg = pg_per_span.get(label) or [0]
        driver = driver_per_span.get(label) or [0]
        return (f"server CPU {sorted(values)[len(values) // 2] * 1e6:,.0f} µs per span, PostgreSQL backends "
                f"{sorted(pg)[len(pg) // 2] * 1e6:,.0f} µs per span, this driver (same machine) "
                f"{sorted(driver)[len(driver) // 2] * 1e6:,.0f} µs per span")

    return [
        Result("ingest spans/s, batch 100", "spans/s", rates_100, target=">= 10000",
               notes=f"{SPANS_BATCH_100} spans per round, 1-2 KB prompt+completion; {cpu('batch100')}; {common}. "
                     + "; ".join(notes)),
        Result("ingest spans/s, batch 1", "spans/s", rates_1,
               notes=f"{REQUESTS_BATCH_1} requests per round; {cpu('batch1')}; {common}"),
        Result("ingest acknowledged spans lost", "spans", [float(lost_total)], target="<= 0",
               notes="acknowledged (200) spans missing from traces_span afterwards, counted with psql"),
    ]

"""Live latency: from a span batch's POST to the WebSocket frame a subscribed browser-like client receives.

Serves the console in production mode (PostgreSQL, channels_redis) on its own
database. A staff user logs in through the login form (CSRF, session cookie);
with that cookie and an Origin header, like a browser on the run page, this
process opens ``ws://.../ws/live/run-<id>/`` for a probe run, and a second
socket on ``runs`` as the runs list would. Meanwhile paced background senders
keep ~``BENCH_LIVE_RATE`` spans/s of realistic agent spans (``bench_ingest``'s
generator, batches of 100, fresh spans, never resent) flowing. Each trial POSTs
one probe span to the probe run whose name carries a unique marker; the clock
runs from just before the POST until the first frame containing the marker.

Live pushes are coalesced per run (``traces/live.py``): a quiet run's change is
pushed at once, a busy run's wait for the end of its interval. The main figure
spaces probes 0.15-0.5 s apart (each is its run's first change); a last phase
sends each 0-30 ms after the previous one's 200, so most wait for the interval.
(The probe markers are letters: a long digit run would be redacted as a card number.)
"""

import asyncio
import os
import random
import statistics
import string
import subprocess
import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.bench_ingest import _kv, build_bodies
from bench.common import (Result, Server, bench_env, create_staff, database_url, load_average, load_summary, login,
                          manage, paced_load, percentile, port_is_free, reset_named_database)

DB_URL = os.environ.get("BENCH_LIVE_DATABASE_URL", database_url("live"))
PORT = int(os.environ.get("BENCH_LIVE_PORT", "18480"))
RATE = int(os.environ.get("BENCH_LIVE_RATE", "1000"))  # background spans/s
TRIALS = int(os.environ.get("BENCH_LIVE_TRIALS", "100"))
SENDERS = 4  # paced background connections
SETTLE_S = 3.0
TIMEOUT_S = 5.0
QUIET = (0.15, 0.5)  # seconds between probe spans: the probe run is quiet, each span is a run's first change
BUSY = (0.0, 0.03)  # the probe run itself busy: spans land inside its coalescing interval


def _probe_body(trace_id: bytes, root_id: bytes, name: str, start_ns: int, *, root: bool = False) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "live-probe"))
    span = trace_pb2.Span(trace_id=trace_id, span_id=root_id if root else os.urandom(8), name=name,
                          start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + 5 * 10**6)
    if not root:
        span.parent_span_id = root_id
    span.attributes.extend([_kv("gen_ai.operation.name", "invoke_agent" if root else "execute_tool"),
                            _kv("gen_ai.tool.name", "probe")])
    rs.scope_spans.add().spans.append(span)
    return request.SerializeToString()


async def _measure(server: Server, cookies: dict, probe_key: str, trace_id: bytes, root_id: bytes,
                   run_id: int, root_start: int, *, trials: int, watch_list: bool, first: int = 0,
                   spacing: tuple[float, float] = QUIET) -> dict:
    import websockets

    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    ws_base = server.url.replace("http://", "ws://")
    headers = {"Cookie": cookie}
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    seen: dict[str, float] = {}
    frames = {"run": 0, "runs": 0}
    stop = asyncio.Event()

    async def listen(ws, label: str, match: bool):
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                return
            at = time.perf_counter()
            frames[label] += 1
            if match:
                text = frame if isinstance(frame, str) else frame.decode()
                for marker in list(sent):
                    if marker not in seen and marker in text:
                        seen[marker] = at

    connect = dict(additional_headers=headers, origin=server.url, max_size=2**24, open_timeout=20)
    async with websockets.connect(f"{ws_base}/ws/live/run-{run_id}/", **connect) as run_ws, \
            websockets.connect(f"{ws_base}/ws/live/{'runs' if watch_list else 'dashboard'}/", **connect) as runs_ws:
        # The second socket watches the runs list (its rows are rendered on every flush) or, for comparison,
        # the dashboard topic (nothing from traces is rendered for it).
        tasks = [asyncio.create_task(listen(run_ws, "run", True)), asyncio.create_task(listen(runs_ws, "runs", False))]
        await asyncio.sleep(SETTLE_S)
        headers = {"Authorization": f"Bearer {probe_key}", "Content-Type": "application/x-protobuf"}
        posts, refused = [], {}
        rng = random.Random(7)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            for trial in range(first, first + trials):
                # letters only: a long digit run would be redacted as a card number and never match
                marker = f"probe-{trial}-{''.join(rng.choices(string.ascii_lowercase, k=12))}"
                body = _probe_body(trace_id, root_id, f"execute_tool {marker}", root_start + (trial + 1) * 10**7)
                for _attempt in range(10):  # 503/429 are retried after Retry-After, as the stock exporter does
                    started = time.perf_counter()
                    sent[marker] = started  # the clock starts at the POST that is accepted
                    answer = await client.post("/v1/traces", content=body)
                    if answer.status_code not in (429, 503):
                        break
                    refused[answer.status_code] = refused.get(answer.status_code, 0) + 1
                    await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                answered[marker] = time.perf_counter()
                posts.append((answered[marker] - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"probe POST answered {answer.status_code}: {answer.text[:200]}")
                await asyncio.sleep(spacing[0] + rng.random() * (spacing[1] - spacing[0]))
            deadline = time.perf_counter() + TIMEOUT_S
            while len(seen) < len(sent) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    latencies = [(seen[m] - sent[m]) * 1000 for m in sent if m in seen]
    after_200 = [(seen[m] - answered[m]) * 1000 for m in sent if m in seen and m in answered]
    return {"latencies": latencies, "after_200": after_200, "missing": len(sent) - len(seen), "posts": posts, "frames": frames,
            "refused": refused}


def run_id_of(trace_hex: str) -> int | None:
    out = subprocess.run(["psql", DB_URL, "-tAc", f"SELECT id FROM traces_run WHERE trace_id = '{trace_hex}'"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return int(out) if out else None


def run() -> list[Result]:
    port_is_free(PORT, "BENCH_LIVE_PORT")
    env = bench_env(DATABASE_URL=DB_URL)
    reset_named_database(DB_URL, env)
    bg_key = manage("create_agent_key", "bench-agent", "--name", "bench", env=env).stdout.strip()
    probe_key = manage("create_agent_key", "live-probe", "--name", "bench", env=env).stdout.strip()
    create_staff(env, "bench-operator", ("Operator",))
    # Fresh spans for the whole run (settle + trials + margin), built before the clock starts.
    seconds = 3 * SETTLE_S + (TRIALS + TRIALS // 2) * sum(QUIET) / 2 + TRIALS * sum(BUSY) / 2 + 3 * TIMEOUT_S
    per_sender = int(RATE / SENDERS * seconds) // 100 * 100
    bodies = [build_bodies(batch=100, total_spans=per_sender, seed=500 + i) for i in range(SENDERS)]
    with Server(port=PORT, env=env) as server:
        client = login(server.url, "bench-operator")
        cookies = dict(client.cookies)
        client.close()
        trace_id, root_id = os.urandom(16), os.urandom(8)
        root_start = time.time_ns() - 60 * 10**9
        headers = {"Authorization": f"Bearer {probe_key}", "Content-Type": "application/x-protobuf"}
        answer = httpx.post(server.url + "/v1/traces", headers=headers,
                            content=_probe_body(trace_id, root_id, "invoke_agent live-probe", root_start, root=True))
        if answer.status_code != 200:
            raise RuntimeError(f"probe root POST answered {answer.status_code}")
        run_id = run_id_of(trace_id.hex())
        if run_id is None:
            raise RuntimeError("probe run not stored")
        probe = (server, cookies, probe_key, trace_id, root_id, run_id, root_start)
        with paced_load(server.url, bg_key, RATE, bodies) as senders:
            data = asyncio.run(_measure(*probe, trials=TRIALS, watch_list=True))
            load = load_average()
            # For comparison: nobody watches the runs list, so a flush renders only the probe run's rows.
            alone = asyncio.run(_measure(*probe, trials=TRIALS // 2, watch_list=False, first=TRIALS))
            alone_load = load_average()
            # The probe run itself busy: its spans wait for the end of its coalescing interval.
            busy = asyncio.run(_measure(*probe, trials=TRIALS, watch_list=True, first=TRIALS + TRIALS // 2,
                                        spacing=BUSY))
            busy_load = load_average()
        peak = server.peak_rss_mib()
    latencies = data["latencies"]
    if len(latencies) < TRIALS // 2:
        raise RuntimeError(f"only {len(latencies)} of {TRIALS} probe spans reached the WebSocket client")
    ordered = sorted(latencies)
    notes = (f"{len(latencies)} of {TRIALS} probe spans seen, {data['missing']} not within {TIMEOUT_S:.0f} s, "
             f"one every {QUIET[0]:g}-{QUIET[1]:g} s on a watched run (so each is its run's first change: "
             f"traces/live.py pushes it at once, coalescing only a busy run's, per FLUSH_INTERVAL); "
             f"{load_summary(senders, RATE)}; probe POST round trip p50 "
             f"{statistics.median(data['posts']):,.0f} ms, probe POSTs refused and retried {data['refused'] or 0}; "
             f"frames received: run page {data['frames']['run']}, runs list {data['frames']['runs']}; "
             f"slowest {', '.join(f'{v:,.0f}' for v in ordered[-3:])} ms; "
             f"from the 200 to the frame (the live push's own part) p50 {statistics.median(data['after_200']):,.0f} ms, "
             f"p99 {percentile(data['after_200'], 99):,.0f} ms; 1 server process, "
             f"peak RSS {peak} MiB; {load}")
    extra = {"rss_mib": peak, "load": load}
    alone_notes = (f"the same, {len(alone['latencies'])} of {TRIALS // 2} probes seen, with the run page the only "
                   f"live view (no runs-list subscriber, so no list rows are rendered): p50 "
                   f"{statistics.median(alone['latencies'] or [float('nan')]):,.0f} ms; {alone_load}")
    busy_notes = (f"the same with the probe run busy (each probe span {BUSY[0] * 1000:g}-{BUSY[1] * 1000:g} ms after the "
                  f"previous one's 200, "
                  f"so most wait for the end of the run's coalescing interval), {len(busy['latencies'])} of {TRIALS} "
                  f"seen: p50 {statistics.median(busy['latencies'] or [float('nan')]):,.0f} ms; run page frames "
                  f"{busy['frames']['run']} for {TRIALS} probe spans; {busy_load}")
    return [
        Result("live: span POST to WebSocket frame p50", "ms", [statistics.median(latencies)], "", notes, extra),
        Result("live: span POST to WebSocket frame p99", "ms", [percentile(latencies, 99)], "< 250", notes, extra),
        Result("live: span POST to WebSocket frame p99, run page only", "ms", [percentile(alone["latencies"], 99)],
               "", alone_notes, {"rss_mib": peak}),
        Result("live: span POST to WebSocket frame p99, busy run", "ms", [percentile(busy["latencies"], 99)],
               "", busy_notes, {"rss_mib": peak}),
    ]

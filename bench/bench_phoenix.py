"""The peer: the ingest benchmark against Arize Phoenix and the console, back to back, as a ratio.

Installs ``arize-phoenix`` from PyPI into its own virtual environment
(``bench/.phoenix-venv``, gitignored; the install is time-boxed) unless it is
there already, and serves it on loopback with its default storage (SQLite in a
fresh temporary working directory). Both servers get exactly the same load:
``bench_ingest``'s span generator and driver, protobuf OTLP/HTTP, batches of
100 on ``CONNECTIONS`` keep-alive connections, the same bodies. A span counts
once it is persisted: for the console, acknowledged spans are in
``traces_span`` when the 200 comes back (counted with psql); Phoenix acknowledges
first and writes later, so the clock stops when its SQLite ``spans`` table
holds every acknowledged span (polled; or at ``PERSIST_TIMEOUT_S``, counting
what was written by then).
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_ingest import build_streams, drive
from bench.common import (ROOT, WORK, Result, Server, bench_env, database_url, load_average, manage, port_is_free,
                          reset_named_database)

DB_URL = os.environ.get("BENCH_PHOENIX_DATABASE_URL", database_url("phoenix"))
CONSOLE_PORT = int(os.environ.get("BENCH_PHOENIX_CONSOLE_PORT", "18482"))
PHOENIX_PORT = int(os.environ.get("BENCH_PHOENIX_PORT", "18483"))
PHOENIX_GRPC_PORT = int(os.environ.get("BENCH_PHOENIX_GRPC_PORT", "18484"))
VENV = ROOT / "bench" / ".phoenix-venv"
PACKAGE = os.environ.get("BENCH_PHOENIX_PACKAGE", "arize-phoenix")
INSTALL_TIMEOUT_S = 600
SPANS = int(os.environ.get("BENCH_PHOENIX_SPANS", "4000"))
ROUNDS = int(os.environ.get("BENCH_PHOENIX_ROUNDS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "8"))
PERSIST_TIMEOUT_S = 180
START_TIMEOUT_S = 600


def ensure_phoenix() -> tuple[Path, str]:
    """The ``phoenix`` executable and its version; installs it on first use."""
    exe = VENV / "bin" / "phoenix"
    python = VENV / "bin" / "python"
    if not exe.exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        try:
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE], capture_output=True,
                                  text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"pip install {PACKAGE} did not finish in {INSTALL_TIMEOUT_S} s") from exc
        if done.returncode or not exe.exists():
            errors = [line for line in (done.stderr + done.stdout).splitlines() if "ERROR" in line or "error" in line]
            raise RuntimeError(f"pip install {PACKAGE} failed: {' / '.join(errors[-5:]) or done.stderr[-500:]}")
    version = subprocess.run([str(python), "-c", "from importlib.metadata import version; "
                              "print(version('arize-phoenix'))"], capture_output=True, text=True).stdout.strip()
    return exe, version


def peak_rss_mib(pid: int) -> float:
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


class Phoenix:
    """``phoenix serve`` on loopback with a fresh working directory (default storage: SQLite there)."""

    def __init__(self, exe: Path):
        self.exe = exe
        self.url = f"http://127.0.0.1:{PHOENIX_PORT}"
        self.proc = None
        self.peak = 0.0

    def __enter__(self):
        port_is_free(PHOENIX_PORT, "BENCH_PHOENIX_PORT")
        port_is_free(PHOENIX_GRPC_PORT, "BENCH_PHOENIX_GRPC_PORT")
        self.dir = tempfile.mkdtemp(prefix="phoenix-bench-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "DATABASE_URL"))}
        env.update(PHOENIX_PORT=str(PHOENIX_PORT), PHOENIX_HOST="127.0.0.1", PHOENIX_WORKING_DIR=self.dir,
                   PHOENIX_GRPC_PORT=str(PHOENIX_GRPC_PORT), PHOENIX_TELEMETRY_ENABLED="false")
        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / "phoenix.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.exe), "serve"], env=env, cwd=self.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S  # its migrations alone take 15 s or more here
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        tail = self.log_path.read_text(errors="replace")[-800:]
        raise RuntimeError(f"phoenix serve did not start: {tail}")

    def database(self) -> Path:
        found = sorted(Path(self.dir).rglob("*.db"))
        if not found:
            raise RuntimeError(f"no SQLite file in Phoenix's working directory {self.dir}")
        return found[0]

    def span_count(self) -> int:
        with sqlite3.connect(f"file:{self.database()}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT count(*) FROM spans").fetchone()[0]

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.peak = peak_rss_mib(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def console_span_count() -> int:
    out = subprocess.run(["psql", DB_URL, "-tAc", "SELECT count(*) FROM traces_span"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip())


def run() -> list[Result]:
    exe, version = ensure_phoenix()  # first: a failed install is reported before anything else runs
    port_is_free(CONSOLE_PORT, "BENCH_PHOENIX_CONSOLE_PORT")
    env = bench_env(DATABASE_URL=DB_URL)
    reset_named_database(DB_URL, env)
    key = manage("create_agent_key", "bench-agent", "--name", "bench", env=env).stdout.strip()
    warmup = build_streams(batch=100, total_spans=800, seed=999, connections=CONNECTIONS)
    rounds = [build_streams(batch=100, total_spans=SPANS, seed=700 + r, connections=CONNECTIONS)
              for r in range(ROUNDS)]

    console_rates, console_lost = [], 0
    with Server(port=CONSOLE_PORT, env=env) as server:
        drive(server.url, key, warmup)
        before = console_span_count()
        for streams in rounds:
            seconds, acked, _failures = drive(server.url, key, streams)
            stored = console_span_count() - before
            console_lost += max(0, acked - stored)
            before += stored
            console_rates.append(acked / seconds)
        console_peak = server.peak_rss_mib()
    console_load = load_average()

    phoenix_rates, phoenix_notes, phoenix_lost = [], [], 0
    with Phoenix(exe) as phoenix:
        drive(phoenix.url, "unused", warmup)
        deadline = time.monotonic() + PERSIST_TIMEOUT_S
        while phoenix.span_count() < 800 and time.monotonic() < deadline:
            time.sleep(0.5)
        for number, streams in enumerate(rounds):
            before = phoenix.span_count()
            started = time.perf_counter()
            seconds_acked, acked, failures = drive(phoenix.url, "unused", streams)
            deadline = time.monotonic() + PERSIST_TIMEOUT_S
            stored = phoenix.span_count() - before
            while stored < acked and time.monotonic() < deadline:
                time.sleep(0.2)
                stored = phoenix.span_count() - before
            seconds = time.perf_counter() - started
            phoenix_lost += max(0, acked - stored)
            phoenix_rates.append(stored / seconds)
            phoenix_notes.append(f"round {number}: {acked} acknowledged in {seconds_acked:.1f} s, {stored} persisted "
                                 f"after {seconds:.1f} s{', non-200 ' + str(failures) if failures else ''}")
        phoenix_load = load_average()
    peak_phoenix = phoenix.peak
    ratios = [c / p for c, p in zip(console_rates, phoenix_rates) if p > 0]
    if not ratios:
        raise RuntimeError("Phoenix persisted no spans: " + "; ".join(phoenix_notes))
    same = (f"same load: bench_ingest generator, {SPANS} spans per round in batches of 100 on {CONNECTIONS} "
            f"keep-alive connections, {ROUNDS} rounds after a warm-up")
    return [
        Result("peer: console ingest spans/s (same run)", "spans/s", console_rates, "",
               f"{same}; {console_lost} acknowledged spans missing; 1 server process, peak RSS {console_peak} MiB; "
               f"{console_load}", {"rss_mib": console_peak, "load": console_load}),
        Result(f"peer: Arize Phoenix {version} spans/s persisted", "spans/s", phoenix_rates, "",
               f"{same}; until its SQLite spans table held them; {'; '.join(phoenix_notes)}; {phoenix_lost} "
               f"acknowledged spans not persisted within {PERSIST_TIMEOUT_S} s; Phoenix peak RSS {peak_phoenix} "
               f"MiB; {phoenix_load}", {"rss_mib": peak_phoenix, "load": phoenix_load}),
        Result("peer: ratio console / Phoenix", "x", ratios, "",
               f"per round, console spans/s over Phoenix spans/s; Phoenix {version}, default storage (SQLite)",
               {"rss_mib": None}),
    ]

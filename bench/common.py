"""Shared pieces of the benchmarks: results, the machine, servers on PostgreSQL + Redis.

A benchmark module ``bench/bench_<name>.py`` defines ``run(ctx) -> list[Result]``
and drives the console through its public interfaces from this (separate)
process. ``python -m bench all`` runs every module; ``python -m bench NAME`` one.
"""

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/console_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")


@dataclass
class Result:
    name: str
    unit: str
    samples: list[float]
    target: str = ""           # e.g. ">= 10000" or "< 250"
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def met(self) -> bool | None:
        if not self.target or not self.samples:
            return None
        op, _, value = self.target.partition(" ")
        value = float(value)
        return {">=": self.median >= value, "<": self.median < value, "<=": self.median <= value,
                ">": self.median > value}[op]


def machine() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "postgres": pg, "platform": platform.platform()}


def bench_env(**extra) -> dict:
    """Environment for a console process in production mode on the bench database."""
    env = {**os.environ, "DATABASE_URL": PG_URL, "REDIS_URL": REDIS_URL, "SECRET_KEY": "b" * 50,
           "DEBUG": "false", "SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"}
    env.update(extra)
    return env


def manage(*args, env=None, check=True):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env or bench_env(),
                          capture_output=True, text=True, check=check)


def reset_database() -> None:
    """Drop and re-create the bench database, then migrate it."""
    from urllib.parse import urlparse

    name = urlparse(PG_URL).path.lstrip("/")
    admin = PG_URL.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True,
                   capture_output=True)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    manage("migrate", "-v0")


class Server:
    """``manage.py serve`` in a child process on a free port (production mode)."""

    def __init__(self, port: int = 8765, workers: int = 1, env=None):
        self.port, self.workers, self.env = port, workers, env or bench_env()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def __enter__(self):
        import httpx

        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("console server did not start")

    def peak_rss_mib(self) -> float:
        """Peak RSS of the server and its children, from /proc (VmHWM)."""
        total = 0
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return round(total / 1024, 1)

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

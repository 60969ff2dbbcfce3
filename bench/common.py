"""Shared pieces of the benchmarks: results, the machine, servers on PostgreSQL + Redis.

A benchmark module ``bench/bench_<name>.py`` defines ``run(ctx) -> list[Result]``
and drives the console through its public interfaces from this (separate)
process. ``python -m bench all`` runs every module; ``python -m bench NAME`` one.
"""

import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
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
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", "STATIC_ROOT": str(WORK / "static")}
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


def collect_static(env) -> None:
    """Production mode serves hashed static files from STATIC_ROOT (pages need the manifest): collect them once
    per bench process, always (a static file added since the last run would make every page a 500;
    collectstatic is incremental, cheap when nothing changed)."""
    root = str(Path(env.get("STATIC_ROOT", WORK / "static")))
    if root not in _collected:
        manage("collectstatic", "--noinput", "-v0", env=env)
        _collected.add(root)


_collected: set[str] = set()


class Server:
    """``manage.py serve`` in a child process on a free port (production mode).

    On exit each server records its peak RSS in ``Server.peaks`` (the runner reports it beside the figures).
    """

    peaks: list[float] = []

    def __init__(self, port: int = 8765, workers: int = 1, env=None):
        self.port, self.workers, self.env = port, workers, env or bench_env()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def __enter__(self):
        import httpx

        collect_static(self.env)
        # stderr to a file: an unread PIPE blocks the server once it has logged 64 KiB.
        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 120  # a loaded 2-core machine can take a while to start Django
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"console server did not start; see {self.log_path}")

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
            Server.peaks.append(self.peak_rss_mib())
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()


def database_url(suffix: str) -> str:
    """A database of one benchmark's own, beside the bench database: ``<bench db>_<suffix>``."""
    return f"{PG_URL}_{suffix}"


def reset_named_database(url: str, env: dict) -> None:
    """Drop, re-create and migrate the database at ``url`` (``env`` points the console at it)."""
    from urllib.parse import urlparse

    name = urlparse(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True,
                   capture_output=True)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    manage("migrate", "-v0", env=env)


def port_is_free(port: int, variable: str) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is taken (another server?); set {variable}") from exc


STAFF_PASSWORD = "bench-password-0123456789"

CREATE_STAFF = """
from django.contrib.auth import get_user_model
from console.roles import Role, grant_role
user, _ = get_user_model().objects.get_or_create(username={username!r})
user.set_password({password!r})
user.save()
for role in {roles!r}:
    grant_role(user, role)
print("USER=" + str(user.pk))
"""


def create_staff(env: dict, username: str = "bench-admin", roles=("Admin",)) -> int:
    """A console user holding ``roles`` (by name), with password ``STAFF_PASSWORD``."""
    out = manage("shell", "-c", CREATE_STAFF.format(username=username, password=STAFF_PASSWORD, roles=list(roles)),
                 env=env).stdout
    for line in out.splitlines():
        if line.startswith("USER="):
            return int(line[5:])
    raise RuntimeError(f"could not create user {username}: {out[-500:]}")


def login(url: str, username: str = "bench-admin", password: str = STAFF_PASSWORD):
    """An httpx.Client holding a session cookie, logged in through the console's own form (with CSRF)."""
    import re

    import httpx

    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    if not token:
        raise RuntimeError("no CSRF token on /login/")
    answer = client.post("/login/", data={"username": username, "password": password,
                                          "csrfmiddlewaretoken": token.group(1)},
                         headers={"Referer": url + "/login/"})
    if answer.status_code != 302 or "sessionid" not in client.cookies:
        raise RuntimeError(f"login failed: {answer.status_code}")
    return client


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    import math

    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


class PacedSender(threading.Thread):
    """POSTs OTLP protobuf ``bodies`` of ``spans_per_body`` spans to /v1/traces at ``rate`` spans/s, one keep-alive connection.

    Paced by a schedule, not by answers: a slow answer is caught up, not dropped. Past the last
    body it resends from the first (``ran_out``; the console stores those spans once).
    """

    def __init__(self, url: str, key: str, rate: float, bodies: list[bytes], spans_per_body: int = 100):
        super().__init__(daemon=True)
        self.url, self.key, self.rate, self.bodies, self.spans_per_body = url, key, rate, bodies, spans_per_body
        self.stop = threading.Event()
        self.acked = self.failures = 0
        self.started = self.ended = 0.0
        self.ran_out = False

    def run(self):
        import httpx

        interval = self.spans_per_body / self.rate
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            self.started = next_at = time.perf_counter()
            sent = 0
            while not self.stop.is_set():
                if sent == len(self.bodies):
                    self.ran_out = True
                body = self.bodies[sent % len(self.bodies)]
                sent += 1
                try:
                    if client.post("/v1/traces", content=body).status_code == 200:
                        self.acked += self.spans_per_body
                    else:
                        self.failures += 1
                except httpx.HTTPError:
                    self.failures += 1
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.ended = time.perf_counter()

    @property
    def achieved(self) -> float:
        """Spans/s acknowledged with a 200."""
        return self.acked / max(self.ended - self.started, 1e-9)


@contextmanager
def paced_load(url: str, key: str, rate: float, bodies_per_sender: list[list[bytes]]):
    """Background load of ``rate`` spans/s in total, one :class:`PacedSender` per body list; stopped on exit."""
    senders = [PacedSender(url, key, rate / len(bodies_per_sender), bodies) for bodies in bodies_per_sender]
    for sender in senders:
        sender.start()
    try:
        yield senders
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(timeout=60)


def load_summary(senders: list[PacedSender], target: float) -> str:
    """E.g. "background 1,000 spans/s acknowledged (target 1000), 0 non-200"."""
    achieved = sum(sender.achieved for sender in senders)
    failures = sum(sender.failures for sender in senders)
    ran_out = any(sender.ran_out for sender in senders)
    return (f"background {achieved:,.0f} spans/s acknowledged (target {target:g}), {failures} non-200"
            f"{', ran out of fresh spans and resent some' if ran_out else ''}")


class CeleryWorker:
    """``celery -A console worker -B`` (beat inside) in its own process group, logging to
    ``bench/.work/<name>-celery.log``; ``wait_ready`` waits for the worker's "ready." line."""

    def __init__(self, env: dict, name: str, *, wait_ready: bool = False):
        self.env, self.name, self.wait_ready = env, name, wait_ready
        self.log_path = WORK / f"{name}-celery.log"
        self.proc = None

    def __enter__(self):
        WORK.mkdir(parents=True, exist_ok=True)
        schedule = WORK / f"{self.name}-beat-schedule"
        for stale in WORK.glob(f"{self.name}-beat-schedule*"):
            stale.unlink()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "console", "worker", "-B", "-s", str(schedule),
                 "--loglevel=INFO", "--concurrency=2", "-n", f"bench-{self.name}-{os.getpid()}@%h"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while self.wait_ready and "ready." not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the Celery worker did not start; see {self.log_path}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: finish the running job
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

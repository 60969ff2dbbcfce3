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
    """Production mode serves hashed static files from STATIC_ROOT: collect them once (pages need the manifest)."""
    root = Path(env.get("STATIC_ROOT", WORK / "static"))
    if not (root / "staticfiles.json").exists():
        manage("collectstatic", "--noinput", "-v0", env=env)


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

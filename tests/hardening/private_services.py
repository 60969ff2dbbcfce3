"""PRIVATE PostgreSQL and Redis instances (and a console on them) that fault tests may stop and start.

Never the shared servers on 5432/6379: these live in a temp directory on
ports of their own (free ports, or HARDENING_PG_PORT / HARDENING_REDIS_PORT),
are started and stopped by the fixtures, and are torn down at the end (bounded
in time). Free ports, because two test runs on one machine (several people, or
CI beside a developer) must never stop each other's Redis.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _port(variable: str) -> int:
    value = os.environ.get(variable)
    return int(value) if value else _free_port()


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing_binaries() -> str | None:
    """Why the private services cannot run here, or None."""
    if pg_bin() is None:
        return "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are not installed"
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        return "redis-server/redis-cli are not installed"
    if os.geteuid() == 0 and not shutil.which("su"):
        return "running as root without su (initdb must run as the postgres user)"
    return None


def require(what: str) -> None:
    """Fail the test under CI=true (the suite must run there), else skip it, when the private
    services cannot run here; ``what`` says what the test needs them for."""
    import pytest

    why = missing_binaries()
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {what} cannot run: {why}")
    pytest.skip(f"{what} cannot run here: {why}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class PrivatePostgres:
    def __init__(self, port: int | None = None):
        self.port, self.bin = port or _port("HARDENING_PG_PORT"), pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="hardening-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/console_fault"

    def _as_postgres(self, *args, timeout=60):
        cmd = " ".join(str(a) for a in args)
        if os.geteuid() == 0:
            return subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", cmd], capture_output=True, text=True,
                                  timeout=timeout, check=True)
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, check=True)

    def init(self):
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken; set HARDENING_PG_PORT")
        if os.geteuid() == 0:
            shutil.chown(self.dir, user="postgres", group="postgres")
        self._as_postgres(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{self.port}/postgres", "-qc",
                        "CREATE DATABASE console_fault"], check=True, capture_output=True, timeout=30)

    def start(self):
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-l", self.dir / "log", "-w", "-t", "30",
                          "-o", f"'-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off'",
                          "start")
        _wait(lambda: _port_open(self.port), 30, "the private PostgreSQL")

    def stop(self):
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop")

    def destroy(self):
        try:
            self.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def scalar(self, sql: str) -> str:
        result = subprocess.run(["psql", self.url, "-tAc", sql], capture_output=True, text=True, timeout=30,
                                check=True)
        return result.stdout.strip()


class PrivateRedis:
    def __init__(self, port: int | None = None):
        self.port = port or _port("HARDENING_REDIS_PORT")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken; set HARDENING_REDIS_PORT")
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--daemonize", "yes"], check=True, capture_output=True, timeout=30)
        _wait(lambda: _port_open(self.port), 15, "the private Redis")

    def cli(self, *args) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                                timeout=30, check=True)
        return result.stdout.strip()

    def stop(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=30)
        _wait(lambda: not _port_open(self.port), 15, "the private Redis to stop")


def console_env(pg: PrivatePostgres, redis: PrivateRedis, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CONSOLE_TESTING"))}
    env.update({"DATABASE_URL": pg.url, "REDIS_URL": redis.url, "SECRET_KEY": secrets.token_urlsafe(50),
                "DEBUG": "false", "SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false",
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", "CONSOLE_DB_POOL_MAX": "8",
                "OTLP_RETRY_AFTER_S": "1", "DJANGO_SETTINGS_MODULE": "console.settings"})
    env.update(extra)
    return env


def manage(env, *args, timeout=180) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleServer:
    """``manage.py serve`` in production mode in a child process."""

    def __init__(self, env):
        self.env, self.port = env, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="hardening-console-", suffix=".log", delete=False)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(self.port)], cwd=ROOT,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the console exited: {self.logs()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        _wait(up, 60, "the console server")

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

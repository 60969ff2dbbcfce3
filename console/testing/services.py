"""pytest plugin (``-p console.testing.services``): pick the services the suite runs on.

Loaded before pytest-django configures Django, so it can choose the database:
PostgreSQL and Redis when reachable (``TEST_DATABASE_URL``/``TEST_REDIS_URL``,
defaulting to the local servers), otherwise SQLite and in-memory layers, with
the tests that need the real services skipped and the reason printed. Under
``CI=true`` a missing service fails the run instead.
"""

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/console"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"


def _reachable(url: str) -> str | None:
    """None if a TCP connection to the URL's host and port works, else why not."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port
    try:
        with socket.create_connection((host, port), timeout=1.5):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


def _choose() -> dict:
    status = {}
    pg_url = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    redis_url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
    status["postgres"] = _reachable(pg_url) if pg_url.lower() != "off" else "disabled by TEST_DATABASE_URL=off"
    status["redis"] = _reachable(redis_url) if redis_url.lower() != "off" else "disabled by TEST_REDIS_URL=off"
    if status["postgres"] is None:
        os.environ["DATABASE_URL"] = pg_url
    else:
        os.environ.pop("DATABASE_URL", None)
    if status["redis"] is None:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    status["browser"] = None if chromium else "Debian's chromium is not installed (apt-get install chromium)"
    if chromium:
        os.environ.setdefault("CONSOLE_TEST_CHROMIUM", chromium)
    return status


STATUS = _choose()
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    missing = {name: why for name, why in STATUS.items() if why}
    if IN_CI and missing:
        raise pytest.UsageError(
            "CI=true but services the suite needs are missing: "
            + "; ".join(f"{name}: {why}" for name, why in missing.items())
        )


def pytest_report_header(config):
    lines = []
    for name, why in STATUS.items():
        lines.append(f"console services: {name}: " + ("available" if why is None else f"MISSING - {why}"))
    return lines


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in ("postgres", "redis", "browser"):
            if item.get_closest_marker(marker) and STATUS[marker]:
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}: {STATUS[marker]}"))

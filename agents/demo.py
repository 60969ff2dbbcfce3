"""Demo data for ``manage.py demo``: the fleet's agents and their keys, and the fleet itself.

``seed`` runs in the management command before the server starts: it makes
the demo agents and issues each a fresh key (revoking the previous demo
keys), kept in this process only. ``start_fleet`` runs in a thread of the same
process once serving begins; from there on the fleet talks to the console
only over HTTP (OTLP, approvals API, prompts API), never the database.
"""

import logging
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from agents import services
from agents.models import Agent

log = logging.getLogger("agents.fleet")

DEMO_AGENTS = [
    ("support-bot", "Customer support: answers tickets, issues refunds"),
    ("data-ops", "Runs SQL migrations and data fixes"),
    ("deploy-bot", "Deploys services to staging and prod"),
    ("researcher", "Research assistant making many LLM calls"),
]
DEMO_KEY_NAME = "demo fleet"
HEALTHZ_TIMEOUT_S = 120

# Plain keys issued by seed() for start_fleet() in the same process; never written anywhere.
DEMO_KEYS: dict[str, str] = {}


def seed(stdout) -> None:
    for name, description in DEMO_AGENTS:
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            agent = services.create_agent(name=name, description=description, actor="system:demo")
        for old in agent.keys.active().filter(name=DEMO_KEY_NAME):
            services.revoke_key(key_id=old.pk, actor="system:demo")
        _key, plain = services.issue_key(agent=agent, actor="system:demo", name=DEMO_KEY_NAME)
        DEMO_KEYS[name] = plain
    stdout.write(f"Demo agents: {', '.join(n for n, _ in DEMO_AGENTS)} (fresh keys for the fleet)")


def start_fleet(base_url: str, stdout, *, rate: float = 1.0, healthz_timeout_s: float = HEALTHZ_TIMEOUT_S,
                until: threading.Event | None = None) -> None:
    """Wait for ``/healthz``, then run the demo fleet until the process exits (call it in a daemon thread).

    With ``until``, the fleet stops (and flushes its spans) once that event is set.
    """
    from agents.fleet import Fleet

    base_url = _reachable_url(base_url)
    if not DEMO_KEYS:
        stdout.write("Demo fleet: no demo keys (seed() did not run in this process); not starting.\n")
        return
    if not wait_for_healthz(base_url, timeout_s=healthz_timeout_s):
        stdout.write(f"Demo fleet: {base_url}/healthz did not answer 200 in {healthz_timeout_s:.0f}s; "
                     "starting anyway, the agents retry.\n")
    # One line per fleet request would drown the server's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    fleet = Fleet(base_url, dict(DEMO_KEYS), rate=rate)
    fleet.start()
    stdout.write(f"Demo fleet: {', '.join(DEMO_KEYS)} are working against {base_url}\n")
    if until is None:
        fleet.stop_event.wait()  # daemon thread: ends with the process
        return
    until.wait()
    fleet.stop()


def wait_for_healthz(base_url: str, *, timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _reachable_url(base_url: str) -> str:
    """A URL to connect to: a server bound to every interface is reached on loopback."""
    parts = urlsplit(base_url.rstrip("/"))
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return base_url.rstrip("/")

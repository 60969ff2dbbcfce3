"""The demo fleet against the real console (the ``asgi_server`` fixture), for the tests that play a demo story."""

import contextlib
import io
import time

from agents import demo as agents_demo
from agents.fleet import Fleet
from approvals import conflict_demo
from approvals import demo as approvals_demo
from console.roles import Role
from tests import factories


def wait_until(condition, limit_s: float = 120):
    """``condition()``'s first truthy result, asked every 0.3 s for up to ``limit_s``; None if it never came."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    return None


def seed_demo(*, conflicts: bool = False):
    """The demo's agents (with their fixed keys), rules and queues, plus the users ``reviewer`` (Reviewer) and
    ``admin`` (Admin); with ``conflicts``, the conflict story's arbitration rules too. Returns (reviewer, admin)."""
    reviewer = factories.make_user(Role.REVIEWER, username="reviewer")
    admin = factories.make_user(Role.ADMIN, username="admin")
    agents_demo.seed(io.StringIO())
    approvals_demo.seed(io.StringIO())
    if conflicts:
        conflict_demo.seed(io.StringIO())
    return reviewer, admin


@contextlib.contextmanager
def demo_fleet(url: str, agents: list[str], **options):
    """The named demo agents running against ``url`` with their demo keys (``options`` go to ``Fleet``).

    Stopped on leaving the block; a block that ended normally then checks that no agent had an error.
    """
    fleet = Fleet(url, {name: agents_demo.DEMO_KEYS[name] for name in agents}, **options)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()
    assert sum(s["errors"] for s in fleet.stats().values()) == 0, fleet.stats()

"""``manage.py demo``'s part of the fleet: fresh keys in seed(), the fleet started over HTTP."""

import io
import threading
import time

from agents import demo
from agents.models import AgentKey
from approvals.models import ApprovalRequest


def test_seed_issues_fresh_keys_and_revokes_the_previous_demo_keys(transactional_db):
    demo.seed(io.StringIO())
    first = dict(demo.DEMO_KEYS)
    demo.seed(io.StringIO())
    assert set(first) == {name for name, _ in demo.DEMO_AGENTS}
    assert all(first[name] != demo.DEMO_KEYS[name] for name in first)
    active = AgentKey.objects.active().filter(name=demo.DEMO_KEY_NAME)
    assert active.count() == len(first)
    assert {k.prefix for k in active} == {key[:12] for key in demo.DEMO_KEYS.values()}


def test_a_server_bound_to_every_interface_is_reached_on_loopback():
    assert demo._reachable_url("http://0.0.0.0:8000/") == "http://127.0.0.1:8000"
    assert demo._reachable_url("http://console.internal:80") == "http://console.internal:80"


def test_start_fleet_waits_for_healthz_then_the_demo_agents_work_over_http(asgi_server):
    from traces.models import Run

    demo.seed(io.StringIO())
    out, until = io.StringIO(), threading.Event()
    thread = threading.Thread(target=demo.start_fleet, args=(asgi_server.url, out),
                              kwargs={"rate": 8, "until": until}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if Run.objects.values("agent").distinct().count() == 4 and ApprovalRequest.objects.exists():
                break
            time.sleep(0.5)
    finally:
        until.set()
        thread.join(timeout=60)
    assert "are working against" in out.getvalue()
    assert set(Run.objects.values_list("agent__name", flat=True)) == {n for n, _ in demo.DEMO_AGENTS}
    assert ApprovalRequest.objects.exists()

"""Real services, broken on purpose: a private PostgreSQL and Redis (never the shared ones) under a
console running in production mode as a separate process.

- PostgreSQL stopped during ingest: /v1/traces answers 503 with Retry-After, never 200; after the
  restart the exporter's retries (the same batches again) land every span exactly once.
- Redis stopped: pages, the agent API (including ?wait) and ingest keep working, /healthz says the
  channel layer is down (503); when Redis is back, /healthz is green again (with the approval
  waiters' listener running) and a browser's live socket (reconnecting as the htmx ws extension
  does) receives pushes again, although the restarted Redis forgot every group subscription.
"""

import re
import time

import httpx
import pytest

from tests.factories import PASSWORD
from tests.hardening import private_services as ps
from tests.traces.helpers import PROTOBUF, protobuf_body, record_agent_run

SETUP = """
from tests import factories
from console.roles import Role
factories.make_user(Role.ADMIN, username="ada")
_key, plain = factories.make_key(factories.make_agent("fault-bot"))
print("KEY=" + plain)
"""


@pytest.fixture(scope="module")
def stack():
    ps.require("the fault tests (private PostgreSQL and Redis)")
    pg, redis = ps.PrivatePostgres(), ps.PrivateRedis()
    server = None
    try:
        pg.init()
        redis.start()
        env = ps.console_env(pg, redis, STATIC_ROOT=str(pg.dir / "static"))
        ps.manage(env, "migrate", "-v0")
        ps.manage(env, "collectstatic", "--noinput", "-v0")  # production serves the hashed manifest
        key = re.search(r"KEY=(\S+)", ps.manage(env, "shell", "-c", SETUP)).group(1)
        server = ps.ConsoleServer(env)
        server.start()
        yield pg, redis, server, key
    finally:
        if server:
            server.stop()
        try:
            redis.stop()
        except Exception:  # noqa: BLE001 - already stopped by a test
            pass
        pg.destroy()


def _post_batch(server, key, body, timeout=40):
    return httpx.post(server.url + "/v1/traces", content=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": PROTOBUF})


def _retry_until_stored(server, key, body, deadline_s=90):
    """What the OTLP exporter does: retry 503/429 honouring Retry-After (bounded)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            response = _post_batch(server, key, body)
            if response.status_code == 200:
                return response
            assert response.status_code in (429, 503), (response.status_code, response.content[:300])
            wait = float(response.headers.get("Retry-After", "1"))
        except httpx.TransportError:
            wait = 1.0
        if time.monotonic() > deadline:
            pytest.fail("the console did not take the batch again after PostgreSQL came back")
        time.sleep(min(wait, 2.0))


def test_postgres_down_during_ingest_is_503_and_retries_land_exactly_once(stack):
    pg, _redis, server, key = stack
    batches = [protobuf_body(record_agent_run(task=f"batch {i}", n_tools=2)) for i in range(4)]  # 4 spans each
    assert _post_batch(server, key, batches[0]).status_code == 200
    pg.stop()
    try:
        for body in batches[1:3]:
            response = _post_batch(server, key, body)
            assert response.status_code == 503, (response.status_code, response.content[:300])
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        pg.start()
    # the exporter retries the failed batches; a lost answer makes it resend the first one too
    for body in batches[:3]:
        _retry_until_stored(server, key, body)
    assert _post_batch(server, key, batches[3]).status_code == 200
    assert pg.scalar("SELECT count(*) FROM traces_span") == "16"
    assert pg.scalar("SELECT count(*) FROM traces_run") == "4"
    assert pg.scalar("SELECT count(*) FROM (SELECT DISTINCT run_id, span_id FROM traces_span) s") == "16"


def _login(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)
    page = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post("/login/", data={"username": "ada", "password": PASSWORD,
                                            "csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.text[:500]
    return client


def test_redis_down_degrades_live_updates_only_and_comes_back(stack):
    _pg, redis, server, key = stack
    agent = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    browser = _login(server)
    redis.stop()
    try:
        health = httpx.get(server.url + "/healthz", timeout=30)
        assert health.status_code == 503
        checks = health.json()["checks"]
        assert checks["channel_layer"]["ok"] is False and checks["database"]["ok"] is True
        # ingest, the agent API (with a wait that cannot use the channel layer) and pages still work
        assert _post_batch(server, key, protobuf_body(record_agent_run(task="redis down"))).status_code == 200
        created = agent.post("/api/v1/approvals", json={"action": "payments.refund", "risk": "high",
                                                        "arguments": {"amount": 900}})
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        waited = agent.get(f"/api/v1/approvals/{request_id}", params={"wait": 1})
        assert waited.status_code == 200 and waited.json()["status"] == "pending"
        for path in ("/", "/approvals/", "/runs/", f"/approvals/{request_id}/"):
            response = browser.get(path)
            assert response.status_code == 200, (path, response.status_code)
    finally:
        redis.start()
    deadline = time.monotonic() + 60
    while True:
        health = httpx.get(server.url + "/healthz", timeout=15)  # a hanging /healthz fails here
        if health.status_code == 200:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"healthz did not recover after Redis came back: {health.json()}")
        time.sleep(1)
    assert health.json()["checks"]["channel_layer"]["ok"] is True
    assert "Traceback" not in server.logs() or "Internal Server Error" not in server.logs(), server.logs()[-3000:]


class _BrowserSocket:
    """What the htmx ws extension does: one socket to a topic, reconnecting whenever it closes."""

    def __init__(self, server, browser, topic="approvals"):
        self.url = server.url.replace("http://", "ws://") + f"/ws/live/{topic}/"
        self.headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in browser.cookies.items()),
                        "Origin": server.url}
        self.socket, self.reconnects = None, 0

    def _ensure_open(self):
        from websockets.sync.client import connect

        if self.socket is None:
            self.socket = connect(self.url, additional_headers=self.headers, open_timeout=15).__enter__()
            self.reconnects += 1

    def open(self) -> bool:
        from websockets.exceptions import InvalidHandshake

        try:
            self._ensure_open()
        except (InvalidHandshake, OSError, TimeoutError):
            return False
        return True

    def received(self, marker: str, timeout: float) -> bool:
        """True once a frame containing ``marker`` arrives within ``timeout``; reconnects on close."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._ensure_open()
                if marker in self.socket.recv(timeout=left):
                    return True
            except TimeoutError:
                return False
            except (ConnectionClosed, InvalidHandshake, OSError):
                self.close()
                time.sleep(1)  # the extension backs off before reconnecting
        return False

    def close(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _push_arrives(browser_socket, agent, deadline_s: float) -> bool:
    """Create approvals until the socket shows the newest one's signal (bounded)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not browser_socket.open():
            time.sleep(1)  # the handshake is refused while the layer is down; the extension retries
            continue
        created = agent.post("/api/v1/approvals", json={"action": "payments.refund", "risk": "high",
                                                        "summary": "live check"})
        assert created.status_code == 201, created.text
        if browser_socket.received(f'data-approval-id="{created.json()["id"]}"', timeout=10):
            return True
    return False


def test_live_pushes_reach_a_browser_again_after_a_redis_restart(stack):
    _pg, redis, server, key = stack
    agent = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    browser = _BrowserSocket(server, _login(server))
    try:
        assert _push_arrives(browser, agent, deadline_s=60), "live pushes do not work before the outage"
        redis.stop()
        try:
            created = agent.post("/api/v1/approvals", json={"action": "payments.refund", "risk": "high"})
            agent.get(f"/api/v1/approvals/{created.json()['id']}", params={"wait": 1})  # the waiters' listener runs
        finally:
            redis.start()  # empty: every group subscription is gone
        # The socket opened before the outage must not stay open and silent: it is closed (and the page
        # reconnects) or it keeps receiving.
        assert _push_arrives(browser, agent, deadline_s=90), \
            "no live push reached the browser's socket within 90 s of Redis coming back"
        # Redis loses its data without dropping a connection (a flush, a failover to an empty replica):
        # no receive fails, yet every subscription is gone.
        redis.cli("FLUSHALL")
        assert _push_arrives(browser, agent, deadline_s=90), \
            "no live push reached the browser's socket within 90 s of Redis losing its data"
    finally:
        browser.close()
    assert "Internal Server Error" not in server.logs(), server.logs()[-3000:]

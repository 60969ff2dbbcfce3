"""Real headless Chromium (Debian's, from PATH) driven by Playwright, against a
real ASGI server (uvicorn, HTTP + WebSocket) running in a thread of the test
process, on the test database."""

import os
import socket
import threading
import time

import pytest


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AsgiServer:
    def __init__(self):
        import uvicorn

        from console.asgi import application

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port, lifespan="off",
                                log_level="warning", ws="websockets-sansio", timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="asgi-test-server", daemon=True)

    def start(self):
        from channels.layers import channel_layers

        # A channel layer of this server's own: channels_redis binds receive() to one event
        # loop, and an earlier server whose thread outlived its stop() under load may still
        # hold a receive on the process-wide layer ("Two event loops are trying to receive()").
        channel_layers.backends.clear()
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ASGI test server did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def asgi_server(transactional_db, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1"]
    server = AsgiServer()
    server.start()
    yield server
    server.stop()
    from django.db import connections

    from traces import live as traces_live

    # The server's loop is gone: a flush scheduled on it will never run.
    traces_live.use_event_loop(None)
    with traces_live._lock:
        traces_live._scheduled = False
        traces_live._dirty.clear()
    connections.close_all()


@pytest.fixture(scope="module")
def chromium():
    """One browser per test module.

    Playwright's sync API keeps an event loop running in the main thread while
    it is open, which would break async tests and async_to_sync calls in
    whatever test pytest-django schedules next; so it never outlives a module.
    Meanwhile the ORM calls the browser tests make between steps are plain
    synchronous code, which Django allows only with DJANGO_ALLOW_ASYNC_UNSAFE.
    """
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CONSOLE_TEST_CHROMIUM")
    if not executable:
        pytest.skip("Debian's chromium is not installed")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium):
    context = chromium.new_context(timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def new_page(chromium):
    """Open further independent browser sessions (a second user)."""
    contexts = []

    def open_page():
        context = chromium.new_context(timezone_id="UTC")
        contexts.append(context)
        p = context.new_page()
        p.set_default_timeout(10_000)
        return p

    yield open_page
    for context in contexts:
        context.close()


def login(page, server, username, password):
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")

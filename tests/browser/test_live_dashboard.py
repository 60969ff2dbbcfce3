"""A reviewer watches the dashboard while an operator pauses an agent elsewhere."""

import pytest
from playwright.sync_api import expect

from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def test_reviewer_sees_the_agents_tile_change_live_without_reload(asgi_server, page, new_page):
    factories.make_user(Role.REVIEWER, username="rita")
    factories.make_user(Role.OPERATOR, username="otto")
    agent = factories.make_agent("flaky-bot")

    login(page, asgi_server, "rita", factories.PASSWORD)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.get_by_test_id("paused-count")).to_have_text("0")
    page.evaluate("window.__noReload = 'still here'")

    ops = new_page()
    login(ops, asgi_server, "otto", factories.PASSWORD)
    ops.goto(f"{asgi_server.url}/agents/{agent.pk}/")
    ops.fill("input[name=reason]", "looping on lookup_order")
    ops.get_by_role("button", name="Pause agent").click()
    expect(ops.get_by_test_id("agent-state")).to_have_text("paused")

    expect(page.get_by_test_id("paused-count")).to_have_text("1")
    expect(page.locator("#tile-agents")).to_contain_text("flaky-bot")
    expect(page.locator("#tile-agents .badge")).to_have_text("paused")
    assert page.evaluate("window.__noReload") == "still here"
    assert page.js_errors == []


def test_reviewer_cannot_pause_and_sees_no_pause_button(asgi_server, page):
    factories.make_user(Role.REVIEWER, username="rita")
    agent = factories.make_agent("steady-bot")
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/agents/{agent.pk}/")
    expect(page.get_by_test_id("agent-state")).to_have_text("active")
    expect(page.get_by_role("button", name="Pause agent")).to_have_count(0)


def test_websocket_refuses_a_logged_out_browser(asgi_server, page):
    page.goto(f"{asgi_server.url}/login/")
    closed = page.evaluate(
        """url => new Promise(resolve => {
            const ws = new WebSocket(url);
            ws.onopen = () => resolve('opened');
            ws.onclose = (e) => resolve('closed ' + e.code);
        })""",
        asgi_server.url.replace("http", "ws") + "/ws/live/dashboard/",
    )
    assert closed.startswith("closed")

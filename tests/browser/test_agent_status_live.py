"""Another user's Pause/Resume shows on an open agent page without a reload, with the viewer's own buttons."""

import pytest
from playwright.sync_api import expect

from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def test_a_pause_and_resume_by_another_operator_show_live(asgi_server, page, new_page):
    factories.make_user(Role.REVIEWER, username="rita")
    factories.make_user(Role.OPERATOR, username="otto")
    agent = factories.make_agent("billing-bot")
    url = f"{asgi_server.url}/agents/{agent.pk}/"

    login(page, asgi_server, "rita", factories.PASSWORD)  # the watcher: a Reviewer, who may not pause
    page.goto(url)
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.get_by_test_id("agent-state")).to_have_text("active")
    page.evaluate("window.__noReload = 'still here'")

    other = new_page()
    login(other, asgi_server, "otto", factories.PASSWORD)
    other.goto(url)
    other.fill("input[name=reason]", "investigating refunds")
    other.get_by_role("button", name="Pause agent").click()
    expect(other.get_by_test_id("agent-state")).to_have_text("paused")

    expect(page.get_by_test_id("agent-state")).to_have_text("paused")
    expect(page.locator(f"#agent-status-{agent.pk}")).to_contain_text("investigating refunds")
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)  # the Reviewer's own view

    other.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("agent-state")).to_have_text("active")
    assert page.evaluate("window.__noReload") == "still here"
    assert page.js_errors == []

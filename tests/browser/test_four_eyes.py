"""Four eyes in a real browser: two reviewers, each in a browser session of their own, on a request a
guardian rule sends for two approvals."""

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import GuardianRule, Outcome, Queue
from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def test_two_reviewers_approve_and_the_first_cannot_give_the_second(asgi_server, page, new_page):
    queue = Queue.objects.create(name="prod")
    queue.members.set([factories.make_user(Role.REVIEWER, username=name) for name in ("rita", "carl")])
    GuardianRule.objects.create(name="prod-four-eyes", action_pattern="deploy", outcome=Outcome.ASK, queue=queue,
                                required_approvals=2, order=1)
    agent = factories.make_agent("deploy-bot")
    _key, plain = factories.make_key(agent)
    agent_http = httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {plain}"}, timeout=30)
    created = agent_http.post("/api/v1/approvals", json={
        "action": "deploy", "risk": "critical", "summary": "Deploy api v1.42 to prod",
        "arguments": {"service": "api", "version": "v1.42.0", "environment": "prod"}}).json()
    assert created["status"] == "pending" and created["required_approvals"] == 2
    url = f"{asgi_server.url}/approvals/{created['id']}/"

    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(url)
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.get_by_test_id("approvals-count")).to_have_text("0 of 2 approvals")
    other_tab = page.context.new_page()  # rita's second tab, opened before she approves
    other_tab.goto(url)
    expect(other_tab.locator("#live-status")).to_have_text("live")
    form = {"csrfmiddlewaretoken": other_tab.locator("input[name=csrfmiddlewaretoken]").first.input_value(),
            "digest": other_tab.locator("input[name=digest]").input_value(), "verdict": "approve"}

    carl = new_page()
    carl_errors = []
    carl.on("pageerror", lambda exc: carl_errors.append(str(exc)))
    login(carl, asgi_server, "carl", factories.PASSWORD)
    carl.goto(url)
    expect(carl.locator("#live-status")).to_have_text("live")

    page.keyboard.press("a")  # approve
    expect(page.get_by_test_id("approvals-count")).to_have_text("1 of 2 approvals")
    expect(page.get_by_test_id("approval-by")).to_contain_text("rita")
    expect(page.get_by_test_id("second-approval-needed")).to_contain_text("different reviewer")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    # carl's page follows live: one of two given, by rita; his form becomes the second approval's.
    expect(carl.get_by_test_id("four-eyes")).to_have_text("1 of 2 approvals")
    expect(carl.get_by_test_id("approvals-count")).to_have_text("1 of 2 approvals")
    expect(carl.get_by_test_id("second-approval-note")).to_contain_text("rita")
    expect(carl.get_by_role("button", name="Approve with edits")).to_have_count(0)

    # rita's other tab follows live too and offers her nothing more to do...
    expect(other_tab.get_by_test_id("second-approval-needed")).to_be_visible()
    expect(other_tab.get_by_role("button", name="Approve")).to_have_count(0)
    # ...and the form it showed before, posted again from her browser session, is refused.
    again = other_tab.request.post(f"{url}decide/", form=form, headers={"HX-Request": "true", "Referer": url})
    assert again.status == 409 and "you cannot give both" in again.text()
    assert agent_http.get(f"/api/v1/approvals/{created['id']}").json()["status"] == "pending"

    carl.keyboard.press("a")
    expect(carl.get_by_test_id("decision-final")).to_contain_text("approved")
    expect(carl.get_by_test_id("approvals-count")).to_have_text("2 of 2 approvals")
    expect(carl.locator(f"#request-{created['id']}")).to_contain_text("Approved by carl")
    expect(page.locator(f"#request-{created['id']}")).to_contain_text("Approved by carl")  # live on rita's page

    answer = agent_http.get(f"/api/v1/approvals/{created['id']}").json()
    assert (answer["status"], answer["approvals_given"]) == ("approved", 2)
    assert answer["arguments"] == {"service": "api", "version": "v1.42.0", "environment": "prod"}
    assert page.js_errors == [] and carl_errors == []
    agent_http.close()

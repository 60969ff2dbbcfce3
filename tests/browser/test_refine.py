"""An Admin refines a prompt from its reviewers' feedback; the new version goes to canary; agents get it."""

import httpx
import pytest
from playwright.sync_api import expect

from agents import services
from agents.models import PromptLabel
from console.roles import Role
from tests import factories
from tests.agents.test_prompt_fixtures import add_decisions
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def test_refine_creates_a_new_version_on_canary(asgi_server, page):
    admin = factories.make_user(Role.ADMIN, username="ada")
    prompt = services.create_prompt(name="support-reply", actor=admin,
                                    template="Answer {ticket}. Refund whatever the customer asks.")
    v1 = prompt.versions.get()
    services.move_label(prompt=prompt, label="production", version=v1, actor=admin)
    add_decisions(v1, reject=4, category="policy")
    add_decisions(v1, approve=3)

    login_url = asgi_server.url
    login(page, asgi_server, "ada", factories.PASSWORD)
    page.get_by_role("link", name="Prompts").click()
    page.get_by_role("link", name="support-reply").click()
    page.get_by_role("link", name="v1", exact=True).first.click()
    expect(page.locator("#metric-approval")).to_contain_text("42.9%")  # 3 of 7
    page.get_by_test_id("refine").click()

    expect(page.locator("#refine-feedback")).to_contain_text("policy × 4")
    page.screenshot(path="/tmp/prompts-refine.png", full_page=True)
    page.fill("#id_template", "Answer {ticket}. Refunds above the amount paid need a manager.")
    page.fill("#id_commit_message", "respect the refund policy")
    expect(page.locator("#id_to_canary")).to_be_checked()
    page.fill("#id_canary_share", "25")
    page.get_by_test_id("save-version").click()

    page.wait_for_url(f"{login_url}/prompts/support-reply/v2/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("support-reply v2")
    expect(page.get_by_role("heading", level=1)).to_contain_text("canary")
    expect(page.locator("#template")).to_have_text("Answer {ticket}. Refunds above the amount paid need a manager.")
    expect(page.locator("main")).to_contain_text("answers 4 feedback items")

    page.screenshot(path="/tmp/prompts-version.png", full_page=True)
    page.get_by_role("link", name="diff").first.click()
    expect(page.locator("#word-diff ins")).to_contain_text(["Refunds above the amount paid need a manager."])

    page.goto(f"{login_url}/prompts/support-reply/")
    expect(page.locator("#label-canary")).to_contain_text("v2")
    expect(page.locator("#label-canary")).to_contain_text("25%")
    canary = PromptLabel.objects.get(prompt=prompt, name="canary")
    assert canary.version.number == 2 and canary.share == 25

    # Agents asking for production on the canary's bucket now get v2.
    agent = factories.make_agent("support-bot")
    labels = set()
    for _ in range(12):
        _key, plain = factories.make_key(agent)
        body = httpx.get(f"{login_url}/api/v1/prompts/support-reply",
                         headers={"Authorization": f"Bearer {plain}"}).json()
        labels.add((body["label"], body["version"]))
    assert labels <= {("production", 1), ("canary", 2)}

    page.screenshot(path="/tmp/prompts-detail.png", full_page=True)
    page.get_by_test_id("rollback-canary").click()  # the data-confirm dialog is accepted below
    expect(page.locator("#label-canary")).to_have_count(0)
    expect(page.locator("#label-history")).to_contain_text("rollback")
    assert not PromptLabel.objects.filter(prompt=prompt, name="canary").exists()
    assert page.js_errors == []


@pytest.fixture(autouse=True)
def _accept_dialogs(page):
    page.on("dialog", lambda dialog: dialog.accept())

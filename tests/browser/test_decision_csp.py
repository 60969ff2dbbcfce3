"""A keyboard decision swaps the decision card without breaking the Content-Security-Policy: no
style attribute (or anything else) is refused by the browser on the way."""

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import Queue
from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser

LISTEN = """() => {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__violations.push(`${e.violatedDirective} ${e.sample} ${e.sourceFile}:${e.lineNumber}`);
  });
}"""


def _ask(server) -> dict:
    _key, plain = factories.make_key(factories.make_agent("refund-bot"))
    response = httpx.post(f"{server.url}/api/v1/approvals", headers={"Authorization": f"Bearer {plain}"}, timeout=30,
                          json={"action": "refunds.issue", "risk": "high", "summary": "Refund order 42",
                                "arguments": {"order": 42, "amount": 900}, "resource": "shop:order:42"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("key,shown", [("a", "This request is approved"),
                                       ("r", "choose a reason category")])  # r: the form comes back with an error
def test_a_keyboard_decision_violates_no_content_security_policy(asgi_server, page, key, shown):
    Queue.objects.create(name="default").members.set([factories.make_user(Role.REVIEWER, username="rita")])
    created = _ask(asgi_server)
    console = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/{created['id']}/")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate(LISTEN)
    # The reviewer dragged the arguments box taller: the browser keeps that size in its style attribute.
    page.evaluate("document.querySelector('textarea[name=arguments]').style.height = '320px'")
    page.keyboard.press(key)
    expect(page.locator(f"#decide-{created['id']}")).to_contain_text(shown)
    page.wait_for_timeout(500)  # let htmx settle the swapped card (its settle step runs after a delay)
    assert page.evaluate("window.__violations") == []
    assert [text for text in console if "Content Security Policy" in text] == []
    assert page.js_errors == []

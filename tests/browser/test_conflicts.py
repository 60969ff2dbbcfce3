"""A conflict in a real browser: two agents ask to change one customer; the reviewer opens the held request,
sees both side by side, arbitrates, and the page shows the result (and the held agent gets its answer)."""

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import ApprovalRequest, Queue
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser

CUSTOMER = "crm:customer:42"


def _agent(server, name):
    agent = factories.make_agent(name)
    _key, plain = factories.make_key(agent)
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {plain}"}, timeout=30)


def _ask(http, action, arguments, risk="high") -> dict:
    response = http.post("/api/v1/approvals", json={"action": action, "risk": risk, "arguments": arguments,
                                                    "resource": CUSTOMER, "summary": f"{action} on customer 42"})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_reviewer_sees_both_requests_and_rejects_the_held_one(asgi_server, page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    Queue.objects.create(name="default").members.set([rita])
    support, data_ops = _agent(asgi_server, "support-bot"), _agent(asgi_server, "data-ops")
    try:
        first = _ask(support, "crm.update_email", {"customer_id": 42, "email": "new@example.test"})
        held = _ask(data_ops, "crm.merge_customers", {"customer_id": 42, "into": 43}, risk="critical")
        assert held["status"] == "pending" and held["conflict"]["with"] == first["id"]

        login(page, asgi_server, "rita", factories.PASSWORD)
        page.goto(f"{asgi_server.url}/approvals/")
        mark = page.locator(f"#request-{held['id']} [data-testid=conflict-mark]")
        expect(mark).to_contain_text(f"conflict with #{first['id']}")

        page.goto(f"{asgi_server.url}/approvals/{held['id']}/")
        panel = page.locator(f"#conflict-{held['id']}")
        expect(panel).to_have_attribute("data-conflict-state", "held")
        this_side = panel.locator("[data-testid=conflict-this]")
        other_side = panel.locator("[data-testid=conflict-other]")
        expect(this_side).to_contain_text("crm.merge_customers")
        expect(this_side).to_contain_text("data-ops")
        expect(this_side.locator("[data-testid=conflict-this-arguments]")).to_contain_text('"into": 43')
        expect(other_side).to_contain_text("crm.update_email")
        expect(other_side).to_contain_text("support-bot")
        expect(other_side.locator("[data-testid=conflict-other-arguments]")).to_contain_text("new@example.test")
        # Side by side: the two columns start at the same height.
        a, b = this_side.bounding_box(), other_side.bounding_box()
        assert abs(a["y"] - b["y"]) < 2 and a["x"] < b["x"]

        panel.get_by_role("button", name="Reject this one").click()
        expect(panel.locator("[data-field-error=reason]")).to_be_visible()  # a reason is required
        page.locator(f"#arbitration-reason-{held['id']}").fill("merging would overwrite the new e-mail")
        page.get_by_role("button", name="Reject this one").click()
        panel = page.locator(f"#conflict-{held['id']}")
        expect(panel).to_have_attribute("data-conflict-state", "resolved")
        expect(panel.locator("[data-testid=conflict-status]")).to_contain_text("rita")
        expect(panel.locator("[data-testid=conflict-status]")).to_contain_text("This request is rejected")
        expect(page.locator(f"#request-{held['id']} [data-testid=request-status]")).to_have_text("rejected")
        assert page.js_errors == []

        answer = data_ops.get(f"/api/v1/approvals/{held['id']}?wait=5").json()
        assert answer["status"] == "rejected" and answer["reason"].startswith(f"conflict: #{first['id']} holds")
        assert ApprovalRequest.objects.get(pk=first["id"]).status == "pending"
        assert AuditEntry.objects.filter(action="approval.conflict_arbitrated", target_id=str(held["id"]),
                                         actor="user:rita").exists()
    finally:
        support.close()
        data_ops.close()

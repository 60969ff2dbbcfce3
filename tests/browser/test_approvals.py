"""Approvals in a real browser against a real ASGI server: live queue, decision with edits
reaching a waiting agent, the escalation matrix editor, and agent text that must not run."""

import json
import threading

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import EscalationMatrix, Queue
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def _agent_client(server):
    agent = factories.make_agent("refund-bot")
    _key, plain = factories.make_key(agent)
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {plain}"}, timeout=45)


def _ask(agent_http, **body) -> dict:
    payload = {"action": "refunds.issue", "risk": "high", "summary": "Refund order 42",
               "arguments": {"order": 42, "amount": 900, "currency": "EUR"}, "resource": "shop:order:42", **body}
    response = agent_http.post("/api/v1/approvals", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def test_new_request_appears_live_and_edited_approval_reaches_the_waiting_agent(asgi_server, page, new_page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    carl = factories.make_user(Role.REVIEWER, username="carl")
    queue = Queue.objects.create(name="default")
    queue.members.set([rita, carl])
    agent_http = _agent_client(asgi_server)

    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#approval-empty")).to_be_visible()
    page.evaluate("window.__noReload = 'still here'")

    other = new_page()
    login(other, asgi_server, "carl", factories.PASSWORD)
    other.goto(f"{asgi_server.url}/approvals/")
    expect(other.locator("#live-status")).to_have_text("live")

    created = _ask(agent_http)
    assert created["status"] == "pending"
    card = page.locator(f"#request-{created['id']}")
    expect(card).to_be_visible()
    expect(card).to_contain_text("refunds.issue")
    expect(card.locator("time[data-due]")).to_contain_text("left")
    expect(other.locator(f"#request-{created['id']}")).to_be_visible()
    expect(page.locator("#approval-empty")).to_be_hidden()
    assert page.evaluate("window.__noReload") == "still here"

    answer = {}

    def wait_for_decision():
        answer["response"] = agent_http.get(f"/api/v1/approvals/{created['id']}", params={"wait": 30})

    waiter = threading.Thread(target=wait_for_decision, daemon=True)
    waiter.start()

    card.get_by_role("link", name="Open").click()
    page.wait_for_url(f"{asgi_server.url}/approvals/{created['id']}/")
    expect(page.locator("#live-status")).to_have_text("live")
    page.keyboard.press("c")  # claim
    expect(page.locator(f"#request-{created['id']}")).to_contain_text("Claimed by you")
    expect(other.locator(f"#request-{created['id']}")).to_contain_text("Claimed by rita")

    edited = {"order": 42, "amount": 450, "currency": "EUR"}
    page.locator("#id_arguments").fill("{not json")
    page.get_by_role("button", name="Approve with edits").click()
    expect(page.locator('[data-field-error="arguments"]')).to_contain_text("Not valid JSON")
    expect(page.locator("#id_arguments")).to_have_value("{not json")
    page.locator("#id_arguments").fill(json.dumps(edited))
    page.locator("#id_reason_category").select_option("wrong_arguments")
    page.locator("#id_reason").fill("half is enough")
    page.get_by_role("button", name="Approve with edits").click()
    expect(page.get_by_test_id("decision-final")).to_contain_text("approved")
    expect(page.locator(f"#request-{created['id']}")).to_contain_text("Approved by rita")

    waiter.join(timeout=40)
    assert not waiter.is_alive()
    body = answer["response"].json()
    assert answer["response"].status_code == 200
    assert body["status"] == "approved" and body["arguments"] == edited and body["edited"] is True
    assert body["decided_by"] == "rita"

    expect(other.locator(f"#request-{created['id']}")).to_have_count(0)  # gone live from carl's queue
    expect(other.locator("#approval-empty")).to_be_visible()
    assert page.js_errors == []


def test_second_reviewer_sees_already_decided_by_live(asgi_server, page, new_page):
    queue = Queue.objects.create(name="default")
    queue.members.set([factories.make_user(Role.REVIEWER, username=name) for name in ("rita", "carl")])
    created = _ask(_agent_client(asgi_server))

    login(page, asgi_server, "carl", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/{created['id']}/")
    expect(page.locator("#live-status")).to_have_text("live")

    first = new_page()
    login(first, asgi_server, "rita", factories.PASSWORD)
    first.goto(f"{asgi_server.url}/approvals/{created['id']}/")
    first.keyboard.press("a")  # approve
    expect(first.get_by_test_id("decision-final")).to_contain_text("approved")
    # The pushed signal re-renders carl's card and takes the decision form away, saying who decided.
    expect(page.locator(f"#request-{created['id']}")).to_contain_text("Approved by rita")
    expect(page.get_by_test_id("decision-conflict")).to_contain_text("Already approved by rita")
    expect(page.get_by_test_id("decision-final")).to_contain_text("approved")
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    assert page.js_errors == []


def test_admin_edits_an_escalation_matrix_with_validation_and_audit(asgi_server, page):
    factories.make_user(Role.ADMIN, username="ada")
    queue = Queue.objects.create(name="payments")
    login(page, asgi_server, "ada", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/queues/{queue.pk}/matrix/")
    page.evaluate("window.__noReload = 'still here'")

    page.get_by_role("button", name="Add level").click()
    expect(page.get_by_test_id("matrix-level")).to_have_count(1)
    page.locator("#id_level-0-queue_reviewers").check()
    page.get_by_role("button", name="Add level").click()
    expect(page.get_by_test_id("matrix-level")).to_have_count(2)
    expect(page.locator("#id_level-0-queue_reviewers")).to_be_checked()  # input kept across the re-render
    expect(page.locator("#id_level-1-after_minutes")).to_have_value("15")
    assert page.evaluate("window.__noReload") == "still here"

    page.get_by_role("button", name="Save matrix").click()
    level_two = page.get_by_test_id("matrix-level").nth(1)
    expect(level_two.get_by_test_id("level-error")).to_contain_text("Level 2 has no recipients")
    assert not EscalationMatrix.objects.filter(queue=queue).exists()

    page.locator("#id_level-1-webhook_url").fill("https://oncall.example.test/hook")
    page.locator("#id_level-1-repeat_count").fill("2")
    page.locator("#id_breach_action").select_option("expire_rejected")
    page.get_by_role("button", name="Save matrix").click()
    expect(page.locator(".messages")).to_contain_text("Escalation matrix of payments saved")

    matrix = EscalationMatrix.objects.get(queue=queue)
    levels = list(matrix.levels.order_by("order"))
    assert [(lv.after_minutes, lv.notify_queue_reviewers, lv.webhook_url, lv.repeat_count) for lv in levels] == [
        (0, True, "", 0), (15, False, "https://oncall.example.test/hook", 2)]
    assert matrix.breach_action == "expire_rejected"
    entry = AuditEntry.objects.get(action="escalation_matrix.updated")
    assert entry.actor == "user:ada" and entry.after["levels"][1]["webhook_url"] == "https://oncall.example.test/hook"

    page.goto(f"{asgi_server.url}/audit/?action=escalation_matrix")
    expect(page.locator("#audit-rows")).to_contain_text("escalation_matrix.updated")
    assert page.js_errors == []


EVIL_SUMMARY = '<script>window.__xss = "script"</script><img src=x onerror="window.__xss = \'img\'; alert(1)">'
EVIL_LINK = '<a id="evil" hx-get="/logout/" hx-trigger="load">x</a>'


def test_agent_markup_never_runs_on_the_queue_or_decision_page(asgi_server, page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    Queue.objects.create(name="default").members.add(rita)
    agent_http = _agent_client(asgi_server)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/")
    expect(page.locator("#live-status")).to_have_text("live")
    created = _ask(agent_http, action="pay<script>x</script>", summary=EVIL_SUMMARY + EVIL_LINK,
                   resource=EVIL_LINK, arguments={"note": EVIL_SUMMARY, "link": EVIL_LINK})
    card = page.locator(f"#request-{created['id']}")
    expect(card).to_contain_text("<script>window.__xss")  # arrived live, shown as text

    for url in (f"{asgi_server.url}/approvals/", f"{asgi_server.url}/approvals/{created['id']}/"):
        page.goto(url)
        expect(page.locator(f"#request-{created['id']}")).to_contain_text('onerror="window.__xss')
        page.wait_for_timeout(300)  # give any injected handler its chance to run
        assert page.evaluate("window.__xss") is None
        assert page.locator("main img").count() == 0
        assert page.locator("#evil").count() == 0
        assert page.locator('[hx-get="/logout/"]').count() == 0
    expect(page.get_by_test_id("arguments")).to_contain_text("onerror=")
    assert dialogs == []
    page.goto(f"{asgi_server.url}/approvals/")
    expect(page.get_by_role("heading", name="My queue")).to_be_visible()

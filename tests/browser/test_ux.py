"""What a user meets walking the console in a real browser: pages that stay readable
with whatever an agent sends, keyboard review, links a role may follow."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from approvals.models import Queue
from console.roles import Role
from tests import factories
from tests.browser.conftest import login
from traces.models import Run, Span

pytestmark = pytest.mark.browser

VIEWPORT_WIDTH = 1280


def _agent_client(server, name="deploy-bot"):
    agent = factories.make_agent(name)
    _key, plain = factories.make_key(agent)
    return agent, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {plain}"}, timeout=45)


def _page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_long_unbroken_agent_content_wraps_instead_of_widening_the_page(asgi_server, page):
    admin = factories.make_user(Role.ADMIN, username="ada")
    Queue.objects.create(name="default").members.set([admin])
    agent, agent_http = _agent_client(asgi_server)
    response = agent_http.post("/api/v1/approvals", json={
        "action": "deploy." + "averylongactionname" * 10, "risk": "high",
        "summary": "S" * 1500, "resource": "svc:" + "r" * 290,
        "arguments": {"k" * 300: "v" * 3000},
    })
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    now = timezone.now()
    run = Run.objects.create(trace_id="ab" * 16, agent=agent, name="N" * 300, task="T" * 500, status="ok",
                             root_ended=True, started_at=now, ended_at=now + timedelta(seconds=3),
                             duration_ms=3000, span_count=1, last_seq=1)
    Span.objects.create(run=run, span_id="1" * 16, name="N" * 300, kind="tool", tool_name="t" * 200,
                        start_time=now, end_time=now + timedelta(seconds=3), duration_ms=3000, seq=1,
                        received_at=now, input_text="I" * 5000, tool_arguments={"q": "z" * 3000})

    page.set_viewport_size({"width": VIEWPORT_WIDTH, "height": 900})
    login(page, asgi_server, "ada", factories.PASSWORD)
    for path in ("/approvals/", f"/approvals/{request_id}/", "/runs/", f"/runs/{run.trace_id}/", "/audit/"):
        page.goto(f"{asgi_server.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        assert _page_width(page) <= VIEWPORT_WIDTH, f"{path} is wider than the window"
    # The short columns keep their words whole next to a long run name.
    page.goto(f"{asgi_server.url}/runs/")
    agent_cell = page.locator("tr.run-row", has_text="N" * 50).locator("td").first
    expect(agent_cell).to_have_text(agent.name)
    lines = agent_cell.evaluate("e => { const r = document.createRange(); r.selectNodeContents(e);"
                                " return new Set(Array.from(r.getClientRects(), c => Math.round(c.top))).size; }")
    assert lines == 1, "the agent name is broken over lines"


@pytest.mark.parametrize("role, shown, hidden", [
    (Role.REVIEWER, "My queue", "Overview"),
    (Role.OPERATOR, "Overview", "My queue"),
])
def test_the_approvals_tile_links_only_to_pages_the_role_may_open_also_after_a_live_push(
        asgi_server, page, role, shown, hidden):
    from console import dashboard

    factories.make_user(role, username="vic")
    login(page, asgi_server, "vic", factories.PASSWORD)
    tile = page.locator("#tile-approvals")
    expect(page.locator("#live-status")).to_have_text("live")
    for _ in range(2):  # as rendered for this user, then as pushed to every viewer
        expect(tile.get_by_role("link", name=shown)).to_be_visible()
        expect(tile.get_by_role("link", name=hidden)).to_be_hidden()
        assert tile.locator("p.hint").evaluate("e => e.innerText").strip() == shown
        page.evaluate("document.getElementById('tile-approvals').setAttribute('data-stale', '1')")
        dashboard.push_tiles()
        expect(page.locator("#tile-approvals:not([data-stale])")).to_be_attached()
    href = tile.get_by_role("link", name=shown).get_attribute("href")
    assert page.goto(f"{asgi_server.url}{href}").status == 200


def test_a_reviewer_rejects_with_the_keyboard_alone_focus_lands_on_the_missing_reason(asgi_server, page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    Queue.objects.create(name="default").members.set([rita])
    _agent, agent_http = _agent_client(asgi_server, "refund-bot")
    response = agent_http.post("/api/v1/approvals", json={
        "action": "refunds.issue", "risk": "high", "summary": "Refund order 42", "arguments": {"order": 42}})
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]

    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/")
    page.keyboard.press("j")
    page.wait_for_url(f"{asgi_server.url}/approvals/{request_id}/")
    page.keyboard.press("r")  # reject, no reason yet
    expect(page.locator("#decide-%d .has-error" % request_id)).to_contain_text("reason category")
    expect(page.locator("#id_reason_category")).to_be_focused()

    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.locator("#id_reason_category").input_value() != ""
    page.keyboard.press("Tab")
    expect(page.locator("#id_reason")).to_be_focused()
    page.keyboard.type("order 42 was already refunded")
    reject = page.get_by_role("button", name="Reject")
    for _ in range(6):
        page.keyboard.press("Tab")
        if reject.evaluate("e => e === document.activeElement"):
            break
    expect(reject).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("decision-final")).to_contain_text("rejected by rita")
    assert page.js_errors == []


def test_the_first_tab_offers_a_skip_link_past_the_navigation(asgi_server, page):
    factories.make_user(Role.REVIEWER, username="rita")
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/")
    skip = page.get_by_role("link", name="Skip to content")
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    assert skip.evaluate("e => e.getBoundingClientRect().top") >= 0, "the focused skip link is off screen"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    focused_in_main = page.evaluate("document.getElementById('main').contains(document.activeElement)")
    assert focused_in_main, "the Tab after skipping did not land in the page content"


def test_the_why_card_numbers_every_recent_step_in_the_same_type(asgi_server, page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    Queue.objects.create(name="default").members.set([rita])
    agent, agent_http = _agent_client(asgi_server, "refund-bot")
    now = timezone.now()
    run = Run.objects.create(trace_id="cd" * 16, agent=agent, name="refund flow", status="running",
                             started_at=now, span_count=3, last_seq=3)
    for seq, (kind, name, tool) in enumerate([("llm", "chat", ""), ("tool", "execute_tool lookup_order",
                                                                     "lookup_order"), ("llm", "chat again", "")], 1):
        Span.objects.create(run=run, span_id=f"{seq:016x}", name=name, kind=kind, tool_name=tool, seq=seq,
                            start_time=now + timedelta(seconds=seq), end_time=now + timedelta(seconds=seq),
                            received_at=now, output_text=f"output of {name}")
    response = agent_http.post("/api/v1/approvals", json={
        "action": "refunds.issue", "risk": "high", "arguments": {"order": 42}, "trace_id": run.trace_id})
    assert response.status_code == 201, response.text

    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/approvals/{response.json()['id']}/")
    steps = page.locator("#request-why ol > li")
    expect(steps).to_have_count(3)
    looks = steps.evaluate_all("""items => items.map(li => {
        const style = getComputedStyle(li);
        return [style.display, style.overflow, style.fontSize, style.fontFamily].join('|'); })""")
    assert looks[0] == looks[1] == looks[2], looks
    assert looks[1].split("|")[:2] == ["list-item", "visible"], "the tool step lost its number"


def test_a_reviewer_paged_on_a_phone_reads_and_decides_the_request_without_sideways_scrolling(asgi_server, page):
    rita = factories.make_user(Role.REVIEWER, username="rita")
    Queue.objects.create(name="default").members.set([rita])
    _agent, agent_http = _agent_client(asgi_server, "refund-bot")
    response = agent_http.post("/api/v1/approvals", json={
        "action": "refunds.issue", "risk": "high", "summary": "Refund order 42", "arguments": {"order": 42},
        "resource": "shop:order:42"})
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    from approvals.models import Delivery
    Delivery.objects.create(request_id=request_id, channel="webhook", title="Refund order 42",
                            recipient="https://hooks.example.test/services/T000/B000/very-long-webhook-path",
                            status="failed", attempts=3, next_attempt_at=timezone.now(), last_error="HTTP 502 from hooks.example.test: bad gateway")

    page.set_viewport_size({"width": 390, "height": 800})
    login(page, asgi_server, "rita", factories.PASSWORD)
    for path in (f"/approvals/{request_id}/", "/runs/", "/approvals/"):
        page.goto(f"{asgi_server.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        assert _page_width(page) <= 390, f"{path} scrolls sideways on a phone"
    page.goto(f"{asgi_server.url}/approvals/{request_id}/")
    deliveries = page.locator("#request-history table")
    expect(deliveries).to_be_visible()
    assert deliveries.evaluate("e => e.getBoundingClientRect().right") <= 390
    approve = page.get_by_role("button", name="Approve", exact=False).first
    assert approve.evaluate("e => e.getBoundingClientRect().right") <= 390


def test_pages_load_without_a_failed_request_and_the_tab_has_an_icon(asgi_server, page):
    factories.make_user(Role.REVIEWER, username="rita")
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/")
    expect(page.locator("[data-live-status]")).to_have_text("live")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(f"{asgi_server.url}{icon}").status == 200
    assert failed == []


def test_every_span_kind_icon_is_a_glyph_the_browser_can_draw(asgi_server, page):
    """A missing glyph is drawn as the font's empty box (tofu), the same box for every missing one."""
    from traces.templatetags.traces_ui import KIND_ICONS

    factories.make_user(Role.REVIEWER, username="rita")
    agent = factories.make_agent("refund-bot")
    now = timezone.now()
    run = Run.objects.create(trace_id="ef" * 16, agent=agent, name="all kinds", status="ok", root_ended=True,
                             started_at=now, ended_at=now, duration_ms=1, span_count=len(KIND_ICONS),
                             last_seq=len(KIND_ICONS))
    for seq, kind in enumerate(KIND_ICONS, 1):
        Span.objects.create(run=run, span_id=f"{seq:016x}", name=f"{kind} step", kind=kind, seq=seq,
                            start_time=now, end_time=now, received_at=now)
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/{run.trace_id}/")
    icons = page.locator(".span-row .span-kind")
    expect(icons).to_have_count(len(KIND_ICONS))
    drawn = icons.evaluate_all("""els => {
        const canvas = document.createElement('canvas'); canvas.width = 40; canvas.height = 40;
        const ctx = canvas.getContext('2d');
        const pixels = (text, font) => { ctx.clearRect(0, 0, 40, 40); ctx.font = font; ctx.fillText(text, 4, 30);
                                         return ctx.getImageData(0, 0, 40, 40).data.join(','); };
        return els.map(el => {
            const font = '24px ' + getComputedStyle(el).fontFamily, icon = el.textContent.trim()[0];
            return [icon, pixels(icon, font) !== pixels('\\uE000', font)];  // U+E000: no font draws it
        }); }""")
    missing = [icon for icon, ok in drawn if not ok]
    assert missing == [], f"drawn as an empty box: {missing}"


def test_the_keyboard_focus_ring_in_the_timeline_is_not_clipped(asgi_server, page):
    factories.make_user(Role.REVIEWER, username="rita")
    agent = factories.make_agent("refund-bot")
    now = timezone.now()
    run = Run.objects.create(trace_id="fa" * 16, agent=agent, name="tree", status="ok", root_ended=True,
                             started_at=now, ended_at=now, duration_ms=1, span_count=2, last_seq=2)
    Span.objects.create(run=run, span_id="1" * 16, name="root", kind="agent", seq=1,
                        start_time=now, end_time=now, received_at=now)
    Span.objects.create(run=run, span_id="2" * 16, parent_span_id="1" * 16, name="child", kind="tool", seq=2,
                        start_time=now, end_time=now, received_at=now)
    login(page, asgi_server, "rita", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/{run.trace_id}/")
    for target in (page.locator(".span-row .span-toggle:not([hidden])").first, page.locator(".span-row a").first):
        target.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focused from the keyboard, so :focus-visible applies
        expect(target).to_be_focused()
        inside = target.evaluate("""el => {
            const s = getComputedStyle(el), grow = parseFloat(s.outlineWidth) + parseFloat(s.outlineOffset);
            const r = el.getBoundingClientRect(), clip = el.closest('.span-label').getBoundingClientRect();
            return s.outlineStyle !== 'none' && r.left - grow >= clip.left - 0.5 && r.right + grow <= clip.right + 0.5
                   && r.top - grow >= clip.top - 0.5 && r.bottom + grow <= clip.bottom + 0.5; }""")
        assert inside, "the focus ring is cut off by the span label"

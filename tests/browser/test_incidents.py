"""A looping agent is caught live while an operator watches the incidents page; the operator undoes the pause."""

import json

import httpx
import pytest
from playwright.sync_api import expect

from agents.models import Agent
from console.roles import Role
from tests import factories
from tests.browser.conftest import login
from tests.traces import helpers
from traces.incident_models import Incident
from traces.watchers import baselines, detectors, stream

pytestmark = pytest.mark.browser


def _looping_spans(trace, n):
    parent = helpers.new_span_id()  # the root has not arrived: the run is still going
    return [helpers.make_span(trace, parent=parent, name="execute_tool lookup_order", attrs={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
        "gen_ai.tool.call.arguments": json.dumps({"order": 42})}) for _ in range(n)]


def test_looping_run_opens_an_incident_live_and_the_operator_undoes_the_pause(asgi_server, page, settings):
    settings.WATCHERS_MODE = "background"
    detectors.invalidate_cache()
    baselines.invalidate_cache()
    factories.make_user(Role.OPERATOR, username="otto")
    agent = factories.make_agent("loopy-bot")
    _key, plain = factories.make_key(agent)

    login(page, asgi_server, "otto", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/incidents/")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__noReload = 'still here'")

    trace = helpers.new_trace_id()
    with httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {plain}",
                                                         "Content-Type": "application/x-protobuf"}) as http:
        for batch in (_looping_spans(trace, 3), _looping_spans(trace, 3)):
            assert http.post("/v1/traces", content=helpers.body_of(*batch)).status_code == 200

    row = page.locator("#incident-rows tr.incident-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("loopy-bot")
    expect(row).to_contain_text("Loop: lookup_order")
    assert page.evaluate("window.__noReload") == "still here"
    stream.drain()
    incident = Incident.objects.get()
    assert incident.trace_id == trace.hex()
    assert Agent.objects.get(pk=agent.pk).is_paused

    row.get_by_role("link", name=f"#{incident.pk}").click()
    expect(page.get_by_test_id("incident-agent")).to_have_text("loopy-bot")
    expect(page.locator("#live-status")).to_have_text("live")
    pause_row = page.locator("#incident-actions tr[data-action=pause]")
    expect(pause_row.get_by_test_id("action-state")).to_have_text("Done")
    page.on("dialog", lambda dialog: dialog.accept())
    pause_row.get_by_role("button", name="Undo").click()
    expect(page.locator("#incident-actions tr[data-action=pause]").get_by_test_id("action-state")).to_have_text("Undone")
    assert not Agent.objects.get(pk=agent.pk).is_paused
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_test_id("incident-state")).to_have_text("Acknowledged")
    assert page.js_errors == []

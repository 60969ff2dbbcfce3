"""In Chromium: a run left 'running' by an agent that went away shows as Stalled, with its last span time.

Runs abandoned by a restarted demo said Running forever. Now a running run silent for longer than the
runaway detector's max_idle_seconds shows Stalled (tooltip: "No span since <time>") in the runs list
and on the run page; a page left open flips the row when the run goes quiet (no push says so), and a
new span brings Running back. Display only: the status stays 'running'.
"""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from console.roles import Role
from tests import factories
from tests.browser.conftest import login
from traces.models import Run, RunStatus

pytestmark = pytest.mark.browser


def _running_run(agent, *, silent_for_s: float, name: str) -> Run:
    run = Run.objects.create(agent=agent, trace_id=uuid.uuid4().hex, name=name, status=RunStatus.RUNNING,
                             started_at=timezone.now() - timedelta(hours=1))
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(seconds=silent_for_s))
    run.refresh_from_db()
    return run


def test_an_abandoned_run_shows_stalled_with_its_last_span_time_in_the_list_and_on_its_page(asgi_server, page):
    factories.make_user(Role.OPERATOR, username="otto")
    agent = factories.make_agent("billing-bot")
    abandoned = _running_run(agent, silent_for_s=3600, name="invoke_agent abandoned")
    live = _running_run(agent, silent_for_s=1, name="invoke_agent live")
    last_span = timezone.localtime(abandoned.updated_at).strftime("%Y-%m-%d %H:%M:%S UTC")

    login(page, asgi_server, "otto", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/")
    badge = page.locator(f"#run-row-{abandoned.pk} .run-status .status")
    expect(badge).to_have_text("Stalled")
    expect(badge).to_have_attribute("title", f"No span since {last_span}")
    expect(page.locator(f"#run-row-{live.pk} .run-status .status")).to_have_text("Running")

    page.locator(f"#run-row-{abandoned.pk} a").click()
    page.wait_for_url(f"{asgi_server.url}/runs/{abandoned.trace_id}/")
    expect(page.locator(".run-header .run-status .status")).to_have_text("Stalled")
    expect(page.locator(".run-header .run-status .status")).to_have_attribute("title", f"No span since {last_span}")
    assert Run.objects.get(pk=abandoned.pk).status == RunStatus.RUNNING
    assert page.js_errors == []


def test_a_run_that_goes_quiet_while_the_list_is_open_turns_stalled_without_a_reload(asgi_server, page):
    factories.make_user(Role.OPERATOR, username="otto")
    agent = factories.make_agent("billing-bot")
    run = _running_run(agent, silent_for_s=1, name="invoke_agent quiet")

    login(page, asgi_server, "otto", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/")
    badge = page.locator(f"#run-row-{run.pk} .run-status .status")
    expect(badge).to_have_text("Running")
    page.evaluate("window.__noReload = 'still here'")
    # Ten minutes without a span pass (the browser's clock is not ours to move): the deadline the
    # server wrote on the row is put in the past.
    badge.evaluate("b => b.setAttribute('data-stalls-at', new Date(Date.now() - 1000).toISOString())")
    expect(badge).to_have_text("Stalled", timeout=15_000)
    expect(badge).to_have_attribute("title", "No span since "
                                    + timezone.localtime(run.updated_at).strftime("%Y-%m-%d %H:%M:%S UTC"))
    assert page.evaluate("window.__noReload") == "still here"
    assert page.js_errors == []

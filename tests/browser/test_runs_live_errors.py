"""The runs list's live pushes are the same for every viewer: rows of runs a page does not show and
new runs a filtered (or older) page has no place for must leave the page alone, with no console
errors, while the rows it shows still update."""

import pytest
from playwright.sync_api import expect

from console.roles import Role
from tests import factories
from tests.browser.conftest import login
from tests.browser.test_traces import _send
from tests.traces import helpers
from tests.traces.test_views import make_run, make_spans
from traces.models import Run, RunStatus

pytestmark = pytest.mark.browser


def _running(agent, trace: bytes) -> Run:
    """A run already listed (it has a span), still running."""
    run = make_run(agent, trace_id=trace.hex(), status=RunStatus.RUNNING, root_ended=False, ended_at=None,
                   duration_ms=None)
    make_spans(run, 1)
    return run


def _console_errors(page) -> list[str]:
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def test_live_rows_touch_only_rows_on_the_page_without_console_errors(asgi_server, page):
    factories.make_user(Role.OPERATOR, username="otto")
    billing, other = factories.make_agent("billing-bot"), factories.make_agent("other-bot")
    _row, billing_key = factories.make_key(billing)
    _row, other_key = factories.make_key(other)
    old_trace, other_trace, shown_trace = helpers.new_trace_id(), helpers.new_trace_id(), helpers.new_trace_id()
    _running(billing, old_trace)  # 51 runs newer than it: not on the first page
    for _ in range(51):
        make_run(other)
    _running(other, other_trace)
    shown = _running(billing, shown_trace)
    errors = _console_errors(page)
    login(page, asgi_server, "otto", factories.PASSWORD)

    # Filtered: an off-page run's update and a new matching run arrive, then an on-page run's span.
    page.goto(f"{asgi_server.url}/runs/?agent=billing-bot")
    expect(page.locator("[data-live-status]")).to_have_text("live")
    expect(page.locator("tr.run-row")).to_have_count(2)
    _send(asgi_server, other_key, helpers.make_span(other_trace, name="off the page"))
    _send(asgi_server, billing_key, helpers.make_span(helpers.new_trace_id(), name="a new run"))
    _send(asgi_server, billing_key, helpers.make_span(shown_trace, name="one"), helpers.make_span(shown_trace))
    expect(page.locator(f"#run-row-{shown.pk} .run-spans")).to_have_text("3")
    expect(page.locator("tr.run-row")).to_have_count(2)
    assert errors == []

    # Unfiltered first page: the oldest run is beyond it; a new run goes on top.
    page.goto(f"{asgi_server.url}/runs/")
    expect(page.locator("[data-live-status]")).to_have_text("live")
    _send(asgi_server, billing_key, helpers.make_span(old_trace, name="off the page"))
    new_trace = helpers.new_trace_id()
    _send(asgi_server, billing_key, helpers.make_span(new_trace, name="newest"))
    _send(asgi_server, billing_key, helpers.make_span(shown_trace))
    expect(page.locator(f"#run-row-{shown.pk} .run-spans")).to_have_text("4")
    newest = Run.objects.get(trace_id=new_trace.hex())
    expect(page.locator("#runs-rows tr.run-row").first).to_have_id(f"run-row-{newest.pk}")
    old = Run.objects.get(trace_id=old_trace.hex())
    expect(page.locator(f"#run-row-{old.pk}")).to_have_count(0)
    assert errors == []
    assert page.js_errors == []

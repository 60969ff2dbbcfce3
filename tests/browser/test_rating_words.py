"""In Chromium: the "Rate this run" buttons say Good and Bad, not only 👍 and 👎.

On a machine without an emoji font (Debian's chromium on a fresh machine) the two buttons were two
identical empty boxes, telling apart good from bad only by a hover title.
"""

import uuid

import pytest
from playwright.sync_api import expect

from agents.models import Feedback
from console.roles import Role
from tests import factories
from tests.agents.test_prompt_fixtures import make_prompt
from tests.browser.conftest import login
from traces.models import Run

pytestmark = pytest.mark.browser


def test_a_run_is_rated_with_buttons_named_good_and_bad(asgi_server, page):
    factories.make_user(Role.OPERATOR, username="otto")
    make_prompt("support-reply")
    run = Run.objects.create(agent=factories.make_agent("support-bot"), trace_id=uuid.uuid4().hex, name="ticket",
                             status="ok", root_ended=True, prompt_name="support-reply", prompt_version="1")

    login(page, asgi_server, "otto", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/runs/{run.trace_id}/")
    rating = page.locator(f"#rate-{run.trace_id}")
    expect(rating.get_by_role("button", name="Good", exact=True)).to_be_visible()
    expect(rating.get_by_role("button", name="Bad", exact=True)).to_be_visible()
    assert "Bad" in rating.inner_text() and "Good" in rating.inner_text()

    rating.get_by_role("button", name="Bad", exact=True).click()
    expect(page.get_by_text("Thanks: rated")).to_be_visible()
    assert Feedback.objects.get(source="rating").verdict == "down"
    assert page.js_errors == []

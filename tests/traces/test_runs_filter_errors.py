"""A refused runs filter is named and never passed off as a filtered (or as the plain live) list."""

from decimal import Decimal

import pytest

from tests import factories
from tests.traces.test_views import make_run

pytestmark = pytest.mark.django_db


def _notice(html: str) -> str:
    start = html.index('id="runs-filter-error"')
    return html[start:html.index("</p>", start)]


def test_an_invalid_filter_is_named_and_the_valid_ones_still_apply(reviewer_client, agent):
    other = factories.make_agent("other-bot")
    mine = make_run(agent, name="mine", cost=Decimal("1"))
    theirs = make_run(other, name="theirs", cost=Decimal("1"))
    html = reviewer_client.get("/runs/?agent=billing-bot&min_cost=abc").content.decode()
    assert "Enter a number" in html
    notice = _notice(html)
    assert "Not applied: cost ≥ $" in notice and "match only the other filters: Agent" in notice
    assert f'id="run-row-{mine.pk}"' in html and f'id="run-row-{theirs.pk}"' not in html
    assert 'id="runs-rows-filtered"' in html  # live pushes do not add unfiltered runs to it


def test_only_invalid_filters_say_the_list_is_not_filtered(reviewer_client, agent):
    make_run(agent)
    html = reviewer_client.get("/runs/?min_cost=abc&min_duration_ms=-5&since=notadate").content.decode()
    notice = _notice(html)
    assert "from, cost ≥ $, latency ≥ ms" in notice and "<strong>not filtered</strong>" in notice
    assert "New runs appear at the top" not in html and 'href="/runs/">Clear</a>' in html


def test_valid_filters_show_no_notice(reviewer_client, agent):
    make_run(agent)
    assert 'id="runs-filter-error"' not in reviewer_client.get("/runs/?agent=billing-bot").content.decode()
    assert 'id="runs-filter-error"' not in reviewer_client.get("/runs/").content.decode()

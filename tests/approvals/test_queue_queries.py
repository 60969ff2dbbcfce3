"""My queue with four-eyes counts and conflict marks: the number of queries does not grow with the cards."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.services import decide_request
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


def _queue_page_queries(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/approvals/")
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def _add_cards(queue, first, n, start):
    for i in range(start, start + n):
        bot = factories.make_agent(f"bot-{i}")
        req = make_request(agent=bot, action="db.migrate", risk="critical", resource=f"db:table:{i % 2}")
        if not req.is_held:
            decide_request(request_id=req.pk, reviewer=first, verdict="approve", reason="first of two")


def test_the_queue_page_costs_the_same_queries_for_3_or_12_cards(client):
    queue = make_queue("prod")
    make_rule(name="two", action_pattern="db.*", queue=queue, required_approvals=2)
    first, second = make_reviewer(queue, "first"), make_reviewer(queue, "second")
    client.force_login(second)
    _add_cards(queue, first, 3, 0)
    few, html = _queue_page_queries(client)
    assert html.count('data-testid="request-card"') == 3 and 'data-testid="conflict-mark"' in html
    _add_cards(queue, first, 9, 3)
    many, html = _queue_page_queries(client)
    assert html.count('data-testid="request-card"') == 12
    assert "1 of 2 approvals" in html
    assert many == few

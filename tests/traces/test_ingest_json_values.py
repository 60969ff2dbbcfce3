"""Tool arguments whose JSON values the fast encoder refuses (or PostgreSQL's jsonb cannot hold) are still stored."""

import pytest

from traces.models import Span
from tests.traces import helpers

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _store_tool_span(client, agent_key, arguments: str) -> Span:
    span = helpers.make_span(helpers.new_trace_id(), attrs={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "refund", "gen_ai.tool.call.arguments": arguments})
    response = helpers.post(client, helpers.body_of(span), key=agent_key)
    assert response.status_code == 200
    return Span.objects.get(span_id=span.span_id.hex())


def test_an_integer_past_64_bits_in_tool_arguments_is_stored_exactly(client, agent_key):
    stored = _store_tool_span(client, agent_key, '{"order": 123456789012345678901234567890, "note": "x"}')
    assert stored.tool_arguments == {"order": 123456789012345678901234567890, "note": "x"}


def test_nan_in_tool_arguments_is_stored_as_null_not_refused(client, agent_key):
    stored = _store_tool_span(client, agent_key, '{"amount": NaN, "currency": "EUR"}')
    assert stored.tool_arguments == {"amount": None, "currency": "EUR"}

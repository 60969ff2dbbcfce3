"""A run in progress is listed as such, not under the name of whichever child span came first."""

import pytest

from tests.traces import helpers
from traces.models import Run

pytestmark = pytest.mark.django_db


def _row(html: str, run: Run) -> str:
    start = html.index(f'id="run-row-{run.pk}"')
    return html[start:html.index("</tr>", start)]


def test_a_run_without_its_root_span_is_not_named_after_a_child_span(client, agent_key, operator_client):
    trace, root_id = helpers.new_trace_id(), helpers.new_span_id()
    helpers.post(client, helpers.body_of(helpers.make_span(trace, parent=root_id, name="execute_tool ci_status")),
                 key=agent_key)
    run = Run.objects.get()
    row = _row(operator_client.get("/runs/").content.decode(), run)
    assert f'/runs/{run.trace_id}/" class="run-no-root"' in row and "(root span not received yet)</a>" in row
    assert ">execute_tool ci_status</a>" not in row and "first step: execute_tool ci_status" in row

    helpers.post(client, helpers.body_of(helpers.make_span(trace, root_id, name="deploy web-frontend")),
                 key=agent_key)
    row = _row(operator_client.get("/runs/").content.decode(), run)
    assert f'/runs/{run.trace_id}/">deploy web-frontend</a>' in row and "root span not received" not in row

"""Every time a page shows says its zone (the console's zone may not be the reader's)."""

import pytest

from tests.approvals.test_views import make_pending, make_queue
from tests.traces.test_views import make_run, make_spans
from traces.models import Span


@pytest.mark.django_db
def test_request_history_times_name_their_zone(reviewer_client, reviewer, agent, settings):
    req = make_pending(agent, make_queue("billing", reviewer))
    html = reviewer_client.get(f"/approvals/{req.pk}/").content.decode()
    history = html[html.index('id="request-history"'):]
    history = history[:history.index("</ol>")]
    assert "approval.requested" in history
    assert f":{req.created_at:%S} {settings.TIME_ZONE}</time>" in history


@pytest.mark.django_db
def test_span_event_times_name_their_zone(reviewer_client, agent):
    run = make_run(agent)
    (span,) = make_spans(run, 1)
    Span.objects.filter(pk=span.pk).update(events=[{"name": "retry", "time_unix_nano": 1764068400000000000}])
    html = reviewer_client.get(f"/runs/{run.trace_id}/spans/{span.span_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<time>11:00:00.000000 UTC</time>" in html

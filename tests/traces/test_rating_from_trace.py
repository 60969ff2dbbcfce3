"""Reviewers and operators rate a run or a span from the trace page; it becomes prompt feedback."""

import pytest

from agents import services as agent_services
from agents.models import Feedback
from tests.traces.test_views import make_run, make_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated_run(agent):
    agent_services.create_prompt(name="support-reply", actor="system:test", template="Be kind. {ticket}")
    run = make_run(agent, prompt_name="support-reply", prompt_version="1")
    spans = make_spans(run, 2, prompt_name="support-reply", prompt_version="1")
    return run, spans


def test_run_page_offers_a_rating_that_becomes_feedback_on_the_version(reviewer_client, rated_run):
    run, _spans = rated_run
    page = reviewer_client.get(f"/runs/{run.trace_id}/").content.decode()
    assert f'id="rate-{run.trace_id}"' in page
    response = reviewer_client.post("/prompts/rate/", {"trace_id": run.trace_id, "thumb": "down",
                                                       "comment": "refunded without checking"},
                                    HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert (feedback.version.prompt.name, feedback.version.number) == ("support-reply", 1)
    assert feedback.verdict == "down" and feedback.text == "refunded without checking"


def test_span_panel_offers_a_rating_for_that_span(operator_client, rated_run):
    run, spans = rated_run
    panel = operator_client.get(f"/runs/{run.trace_id}/spans/{spans[1].span_id}/",
                                HTTP_HX_REQUEST="true").content.decode()
    assert f'id="rate-{run.trace_id}-{spans[1].span_id}"' in panel


def test_run_without_a_prompt_version_offers_no_rating(reviewer_client, agent):
    run = make_run(agent)
    assert 'class="rating-form"' not in reviewer_client.get(f"/runs/{run.trace_id}/").content.decode()

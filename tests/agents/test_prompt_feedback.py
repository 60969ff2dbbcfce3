"""Feedback from reviewers' decisions (approvals rows) and from ratings on runs and spans."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services
from agents.models import Feedback
from agents.prompts.feedback import argument_diff
from tests.agents.test_prompt_fixtures import make_prompt

pytestmark = pytest.mark.django_db

approvals_models = pytest.importorskip("approvals.models")
if not hasattr(approvals_models, "ApprovalRequest"):
    pytest.skip("approvals models not built yet", allow_module_level=True)


def make_request(agent, *, prompt_version="1", arguments=None, **fields):
    arguments = arguments if arguments is not None else {"order": 42, "amount": 80}
    return approvals_models.ApprovalRequest.objects.create(
        agent=agent, action="refund", arguments=arguments,
        arguments_digest=approvals_models.arguments_digest("refund", arguments), risk="high",
        summary="Customer asks for a refund of order 42", trace_id="ab" * 16, span_id="cd" * 8,
        prompt_name="support-reply", prompt_version=prompt_version, **fields)


def decide(req, reviewer, verdict, *, category="", reason="", arguments=None, at=None):
    return approvals_models.Decision.objects.create(request=req, reviewer=reviewer, verdict=verdict,
                                                    reason_category=category, reason=reason, arguments=arguments,
                                                    created_at=at or timezone.now())


def test_a_rejection_becomes_feedback_on_the_requests_prompt_version(agent, reviewer):
    prompt = make_prompt()
    req = make_request(agent)
    decide(req, reviewer, "reject", category="policy", reason="refunds over 50 need a manager")
    feedback = services.record_feedback(request=req)
    assert feedback.version == prompt.versions.get(number=1)
    assert (feedback.verdict, feedback.category, feedback.text) == ("reject", "policy",
                                                                     "refunds over 50 need a manager")
    assert feedback.approval_id == req.pk and feedback.trace_id == "ab" * 16 and feedback.author == reviewer
    assert feedback.action == "refund" and feedback.arguments == {"order": 42, "amount": 80}


def test_recording_the_same_decision_twice_keeps_one_row(agent, reviewer):
    make_prompt()
    req = make_request(agent)
    decide(req, reviewer, "approve", category="ok")
    first = services.record_feedback(request=req)
    second = services.record_feedback(request=req)
    assert first.pk == second.pk and Feedback.objects.count() == 1


def test_a_modify_records_the_argument_diff(agent, reviewer):
    make_prompt()
    req = make_request(agent, arguments={"order": 42, "amount": 80, "note": {"to": "a"}})
    decide(req, reviewer, "modify", category="wrong_arguments", arguments={"order": 42, "amount": 50,
                                                                            "note": {"to": "b"}})
    feedback = services.record_feedback(request=req)
    assert feedback.verdict == "modify"
    assert feedback.argument_diff == {"amount": {"from": 80, "to": 50}, "note.to": {"from": "a", "to": "b"}}


def test_the_latest_decision_is_used(agent, reviewer, admin_user):
    make_prompt()
    req = make_request(agent)
    decide(req, reviewer, "approve", at=timezone.now() - timedelta(minutes=1))
    decide(req, admin_user, "reject", category="risk")
    assert services.record_feedback(request=req).verdict == "reject"


@pytest.mark.parametrize("version", ["", "7", "latest"])
def test_requests_without_a_known_version_give_no_feedback(agent, reviewer, version):
    make_prompt()
    req = make_request(agent, prompt_version=version)
    decide(req, reviewer, "reject")
    assert services.record_feedback(request=req) is None
    assert not Feedback.objects.exists()


def test_no_decision_yet_gives_no_feedback(agent):
    make_prompt()
    assert services.record_feedback(request=make_request(agent)) is None


def test_argument_diff_lists_added_and_removed_fields():
    assert argument_diff({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b": {"from": 2, "to": None},
                                                                 "c": {"from": None, "to": 3}}
    assert argument_diff([1], [2]) == {"(all)": {"from": [1], "to": [2]}}


# --- ratings -------------------------------------------------------------------------------

traces_models = pytest.importorskip("traces.models")


def make_run(agent, *, trace_id="ef" * 16, prompt_version="1", span_version=""):
    now = timezone.now()
    run = traces_models.Run.objects.create(trace_id=trace_id, agent=agent, name="ticket", status="ok",
                                           prompt_name="support-reply", prompt_version=prompt_version)
    traces_models.Span.objects.create(run=run, span_id="12" * 8, name="llm call", start_time=now, end_time=now,
                                      received_at=now, prompt_name="support-reply" if span_version else "",
                                      prompt_version=span_version)
    return run


def test_thumbs_down_on_a_run_is_feedback_on_its_version(agent, operator):
    prompt = make_prompt()
    run = make_run(agent)
    feedback = services.record_rating(user=operator, trace_id=run.trace_id, thumb="down", comment="rude tone")
    assert feedback.version == prompt.versions.get(number=1)
    assert (feedback.source, feedback.verdict, feedback.text) == ("rating", "down", "rude tone")


def test_rating_again_replaces_the_users_rating(agent, operator, reviewer):
    make_prompt()
    run = make_run(agent)
    services.record_rating(user=operator, trace_id=run.trace_id, thumb="down")
    services.record_rating(user=operator, trace_id=run.trace_id, thumb="up", comment="fine after all")
    services.record_rating(user=reviewer, trace_id=run.trace_id, thumb="down")
    assert sorted(Feedback.objects.values_list("author__username", "verdict")) == [("otto", "up"),
                                                                                   ("rita", "down")]


def test_a_span_rating_uses_the_spans_prompt_version(agent, operator):
    prompt = make_prompt()
    services.create_version(prompt=prompt, author="system:test", template="v2 {ticket}")
    run = make_run(agent, prompt_version="1", span_version="2")
    feedback = services.record_rating(user=operator, trace_id=run.trace_id, span_id="12" * 8, thumb="up")
    assert feedback.version.number == 2 and feedback.span_id == "12" * 8


def test_rating_a_run_without_a_prompt_version_is_refused(agent, operator):
    make_prompt()
    run = make_run(agent, prompt_version="")
    with pytest.raises(services.NoPromptVersion):
        services.record_rating(user=operator, trace_id=run.trace_id, thumb="up")
    with pytest.raises(ValueError):
        services.record_rating(user=operator, trace_id=run.trace_id, thumb="meh")


def test_the_rate_view_records_a_rating_and_returns_to_the_page(agent, operator_client, clients_by_role):
    make_prompt()
    run = make_run(agent)
    response = operator_client.post("/prompts/rate/", {"trace_id": run.trace_id, "thumb": "down",
                                                       "comment": "wrong", "next": f"/runs/{run.trace_id}/"})
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.trace_id}/"
    assert Feedback.objects.get().text == "wrong"
    evil = operator_client.post("/prompts/rate/", {"trace_id": run.trace_id, "thumb": "up",
                                                   "next": "https://evil.example/"})
    assert evil["Location"] == "/prompts/"
    assert clients_by_role["none"].post("/prompts/rate/", {"trace_id": run.trace_id,
                                                           "thumb": "up"}).status_code == 403


def test_the_rate_view_answers_htmx_with_a_fragment(agent, reviewer_client):
    make_prompt()
    run = make_run(agent, prompt_version="")
    response = reviewer_client.post("/prompts/rate/", {"trace_id": run.trace_id, "thumb": "up"},
                                    HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"carries no prompt version" in response.content
    assert b"<html" not in response.content


def test_version_page_lists_the_runs_that_used_it(agent, reviewer_client):
    make_prompt()
    run = make_run(agent)
    make_run(agent, trace_id="99" * 16, prompt_version="")
    html = reviewer_client.get("/prompts/support-reply/v1/").content.decode()
    assert f'href="/runs/{run.trace_id}/"' in html and "99" * 16 not in html


def test_feedback_from_a_decision_made_through_the_approvals_service(agent):
    """The real flow: a request created and decided by the approvals services, then recorded."""
    from approvals import services as approval_services
    from tests.approvals.helpers import make_queue, make_request as make_approval, make_reviewer, make_rule

    make_prompt()
    queue = make_queue("payments")
    make_rule(queue=queue)
    reviewer = make_reviewer(queue, "rev")
    req = make_approval(agent=agent, action="refund", arguments={"order": 1, "amount": 900},
                        prompt_name="support-reply", prompt_version="1", trace_id="cd" * 16)
    approval_services.decide_request(request_id=req.pk, reviewer=reviewer, verdict="modify",
                                     reason="cap at what was paid", reason_category="wrong_arguments",
                                     arguments={"order": 1, "amount": 500})
    req.refresh_from_db()
    feedback = services.record_feedback(request=req)  # idempotent if approvals already recorded it
    assert Feedback.objects.count() == 1
    assert feedback.verdict == "modify" and feedback.category == "wrong_arguments"
    assert feedback.argument_diff == {"amount": {"from": 900, "to": 500}}
    assert feedback.approval_id == req.pk and feedback.author == reviewer


def test_the_rating_confirmation_says_good_or_bad_in_words(agent, operator_client):
    make_prompt()
    run = make_run(agent)
    for thumb, word in (("down", "Bad"), ("up", "Good")):
        response = operator_client.post("/prompts/rate/", {"trace_id": run.trace_id, "thumb": thumb},
                                        HTTP_HX_REQUEST="true")
        text = response.content.decode()
        assert response.status_code == 200 and "Thanks: rated support-reply" in text and f" as {word}." in text
        assert "👍" not in text and "👎" not in text  # an empty box without an emoji font

"""Feedback on prompt versions: reviewers' decisions (from approvals) and ratings (from trace pages).

Read defensively: approvals and traces are other apps; their rows are read by attribute
and their models looked up through the app registry.
"""

from django.apps import apps
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Feedback, FeedbackSource, FeedbackVerdict, Prompt, PromptVersion
from agents.prompts.versions import get_version


class NoPromptVersion(LookupError):
    """The run or span names no prompt version the console knows."""


def find_version(prompt_name: str, prompt_version) -> PromptVersion | None:
    if not prompt_name or prompt_version in (None, ""):
        return None
    prompt = Prompt.objects.filter(name=prompt_name).first()
    return get_version(prompt, prompt_version) if prompt else None


def argument_diff(before, after, _path: str = "") -> dict:
    """{dotted.path: {"from": old, "to": new}} for every changed leaf; missing leaves are None."""
    if isinstance(before, dict) and isinstance(after, dict):
        diff = {}
        for key in list(before) + [k for k in after if k not in before]:
            path = f"{_path}.{key}" if _path else str(key)
            diff.update(argument_diff(before.get(key), after.get(key), path))
        return diff
    if before == after:
        return {}
    return {_path or "(all)": {"from": before, "to": after}}


def _latest_decision(request):
    decisions = getattr(request, "decisions", None)
    if decisions is None:
        return None
    return decisions.order_by("-created_at", "-id").first()


def record_feedback(*, request) -> Feedback | None:
    """Turn the latest decision on an approval request into feedback on its prompt version.

    Idempotent per decision (unique ``decision:<id>``); returns None when the request names no
    known prompt version or has no decision yet. Joins the caller's transaction.
    """
    version = find_version(getattr(request, "prompt_name", ""), getattr(request, "prompt_version", ""))
    decision = _latest_decision(request)
    if version is None or decision is None:
        return None
    verdict = str(decision.verdict)
    if verdict not in (FeedbackVerdict.APPROVE, FeedbackVerdict.REJECT, FeedbackVerdict.MODIFY):
        return None
    proposed = getattr(request, "arguments", None)
    diff = None
    if verdict == FeedbackVerdict.MODIFY and getattr(decision, "arguments", None) is not None:
        diff = argument_diff(proposed, decision.arguments)
    key = f"decision:{decision.pk}"
    existing = Feedback.objects.filter(source_key=key).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Feedback.objects.create(
                version=version, source=FeedbackSource.DECISION, source_key=key, verdict=verdict,
                category=str(getattr(decision, "reason_category", "") or ""),
                text=str(getattr(decision, "reason", "") or ""),
                action=str(getattr(request, "action", "") or "")[:300],
                summary=str(getattr(request, "summary", "") or ""),
                arguments=proposed, argument_diff=diff,
                trace_id=str(getattr(request, "trace_id", "") or "")[:32],
                span_id=str(getattr(request, "span_id", "") or "")[:16],
                approval_id=request.pk, decision_id=decision.pk,
                author=getattr(decision, "reviewer", None),
                created_at=getattr(decision, "created_at", None) or timezone.now(),
            )
    except IntegrityError:  # a concurrent call recorded the same decision
        return Feedback.objects.get(source_key=key)


def _run_and_span(trace_id: str, span_id: str):
    try:
        Run = apps.get_model("traces", "Run")
    except LookupError:
        return None, None
    run = Run.objects.filter(trace_id=trace_id).first()
    span = None
    if run is not None and span_id:
        try:
            span = apps.get_model("traces", "Span").objects.filter(run=run, span_id=span_id).first()
        except LookupError:
            span = None
    return run, span


def record_rating(*, user, trace_id: str, thumb: str, comment: str = "", span_id: str = "",
                  prompt_name: str = "", prompt_version: str = "") -> Feedback:
    """Thumbs up/down with a comment on a run (or one span) as feedback on its prompt version.

    The version comes from the span, else the run, else the names given. One rating per
    (user, run, span): rating again replaces it. Raises NoPromptVersion, ValueError for a bad thumb.
    """
    if thumb not in (FeedbackVerdict.UP, FeedbackVerdict.DOWN):
        raise ValueError("A rating is 'up' or 'down'.")
    run, span = _run_and_span(trace_id, span_id)
    version = None
    for source in (span, run):
        if source is not None and version is None:
            version = find_version(getattr(source, "prompt_name", ""), getattr(source, "prompt_version", ""))
    if version is None:
        version = find_version(prompt_name, prompt_version)
    if version is None:
        raise NoPromptVersion("This run carries no prompt version the console knows "
                              "(span attributes console.prompt.name / console.prompt.version).")
    key = f"rating:{user.pk}:{trace_id}:{span_id}"
    fields = dict(version=version, source=FeedbackSource.RATING, verdict=thumb, text=comment[:5000],
                  trace_id=trace_id[:32], span_id=span_id[:16], author=user, created_at=timezone.now(),
                  action=(getattr(span, "name", "") or getattr(run, "name", "") or "")[:300])
    with transaction.atomic():
        feedback, _created = Feedback.objects.update_or_create(source_key=key, defaults=fields)
    return feedback

"""Demo prompts for ``manage.py demo``: one per demo agent, requested by name by the fleet.

- ``support-reply``: v1 in production, v2 ("be generous") on canary at 30%, with 10 of its first
  12 decisions rejections. Reject its next few refund requests and, once the canary has
  ``PROMPTS_CANARY_MIN_SAMPLE`` decisions, the canary guard rolls it back and tells the owners.
- ``migration-planner``: v2 refined from v1 after reviewers' feedback; its scorecard beats v1's
  (seeded decision history), and it is in production.
- ``deploy-planner``, ``research-summarize``: one version in production.
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agents import services
from agents.fleet import texts
from agents.models import Feedback, FeedbackSource, Prompt

ACTOR = "system:demo"

MIGRATION_PROMPT_V2 = texts.MIGRATION_PROMPT.replace(
    "Production migrations must be reviewed by a human.",
    "State the expected lock time and the number of rows touched, and never drop or rename a column in the "
    "same release that stops using it. Production migrations must be reviewed by a human.")


def seed(stdout) -> None:
    made = []
    with transaction.atomic():
        if _new("support-reply"):
            prompt = services.create_prompt(name="support-reply", actor=ACTOR, template=texts.SUPPORT_PROMPT_V1,
                                            description="support-bot: answers tickets, proposes refunds",
                                            owners=_owners())
            v1 = prompt.versions.get(number=1)
            v2 = services.create_version(prompt=prompt, author=ACTOR, template=texts.SUPPORT_PROMPT_V2, parent=v1,
                                         commit_message="be generous: refund upset customers at once")
            services.move_label(prompt=prompt, label="production", version=v1, actor=ACTOR)
            services.move_label(prompt=prompt, label="canary", version=v2, actor=ACTOR, share=30,
                                reason="try a friendlier policy")
            _history(v1, approve=40, reject=6, modify=4, days=3)
            # The canary's first hours: reviewers already rejected most of its refunds. About eight
            # more decisions on its requests reach the guard's minimum sample, and it rolls back.
            _history(v2, approve=2, reject=10, modify=0, days=0,
                     reasons=[("policy", "refund above what the customer paid"),
                              ("risk", "goodwill amount on top of a full refund, no order check")])
            made.append("support-reply (v2 on canary at 30%, reviewers rejecting it)")
        if _new("migration-planner"):
            prompt = services.create_prompt(name="migration-planner", actor=ACTOR, template=texts.MIGRATION_PROMPT,
                                            description="data-ops: plans safe PostgreSQL migrations",
                                            owners=_owners())
            v1 = prompt.versions.get(number=1)
            services.move_label(prompt=prompt, label="production", version=v1, actor=ACTOR)
            rejected = _history(v1, approve=28, reject=18, modify=6, days=6,
                                reasons=[("risk", "no lock-time estimate for a 40M-row table"),
                                         ("policy", "drops a column still read by the API")])
            v2 = services.create_version(prompt=prompt, author=ACTOR, template=MIGRATION_PROMPT_V2, parent=v1,
                                         commit_message="state lock time and rows; no drop in the same release",
                                         answers_feedback_ids=rejected)
            _history(v2, approve=47, reject=3, modify=2, days=2)
            services.move_label(prompt=prompt, label="production", version=v2, actor=ACTOR,
                                reason="scorecard beats v1")
            made.append("migration-planner (v2 beats v1)")
        for name, template, description in (
                ("deploy-planner", texts.DEPLOY_PROMPT, "deploy-bot: release plans"),
                ("research-summarize", texts.RESEARCH_PROMPT, "researcher: summaries with citations")):
            if _new(name):
                prompt = services.create_prompt(name=name, actor=ACTOR, template=template, description=description)
                services.move_label(prompt=prompt, label="production", version=prompt.versions.get(), actor=ACTOR)
                made.append(name)
    stdout.write("Demo prompts: " + (", ".join(made) if made else "already there"))


def _new(name: str) -> bool:
    return not Prompt.objects.filter(name=name).exists()


def _owners():
    from django.contrib.auth import get_user_model

    return list(get_user_model().objects.filter(username="admin"))


def _history(version, *, approve, reject, modify, days, reasons=(("policy", "refund above what was paid"),)):
    """Decision feedback spread over the past ``days`` (as if reviewers had decided); returns rejected ids."""
    now = timezone.now()
    total = approve + reject + modify
    rows = []
    verdicts = ["approve"] * approve + ["reject"] * reject + ["modify"] * modify
    for i, verdict in enumerate(verdicts):
        category, text = reasons[i % len(reasons)] if verdict == "reject" else ("", "")
        if verdict == "modify":
            category, text = "wrong_arguments", "lowered the amount"
        rows.append(Feedback(
            version=version, source=FeedbackSource.DECISION, verdict=verdict, category=category,
            source_key=f"decision:demo-{version.prompt.name}-v{version.number}-{i}",
            created_at=now - timedelta(days=days) + timedelta(days=days) * i / total,
            text=text or "(demo history)",
            argument_diff={"amount": {"from": 640, "to": 500}} if verdict == "modify" else None,
        ))
    created = Feedback.objects.bulk_create(rows)
    return [row.pk for row in created if row.verdict == "reject"]

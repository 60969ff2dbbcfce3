"""Helpers shared by the prompt tests (no tests here)."""

import itertools

from agents import services
from agents.models import Feedback, FeedbackSource, Prompt

_seq = itertools.count(1)


def make_prompt(name="support-reply", *, template="Answer {ticket} politely.", actor=None, owners=()) -> Prompt:
    return services.create_prompt(name=name, actor=actor or "system:test", template=template, owners=owners)


def add_version(prompt, template, *, author="system:test", parent=None, **fields):
    parent = parent if parent is not None else prompt.versions.order_by("-number").first()
    return services.create_version(prompt=prompt, author=author, template=template, parent=parent, **fields)


def add_decisions(version, *, approve=0, reject=0, modify=0, at=None, category="policy"):
    """Feedback rows as if reviewers had decided requests made with ``version``."""
    from django.utils import timezone

    at = at or timezone.now()
    rows = []
    for verdict, count in (("approve", approve), ("reject", reject), ("modify", modify)):
        for _ in range(count):
            n = next(_seq)
            rows.append(Feedback(version=version, source=FeedbackSource.DECISION, source_key=f"decision:t{n}",
                                 verdict=verdict, category=category if verdict == "reject" else "",
                                 text=f"reason {n}", created_at=at))
    Feedback.objects.bulk_create(rows)
    return rows

"""What the Refine editor shows beside a template: grouped feedback and representative examples."""

from collections import Counter, defaultdict
from dataclasses import dataclass

from agents.models import Feedback, FeedbackVerdict, PromptVersion

EXAMPLES_PER_KIND = 5


@dataclass
class Group:
    title: str
    count: int
    texts: list  # a few reviewer reasons / comments


def open_feedback(version: PromptVersion):
    """Feedback on ``version`` that no later version has answered yet, newest first."""
    return (Feedback.objects.filter(version=version, addressed_by__isnull=True)
            .exclude(verdict__in=[FeedbackVerdict.APPROVE, FeedbackVerdict.UP]))


def grouped(version: PromptVersion) -> dict:
    rows = list(open_feedback(version).order_by("-created_at", "-id")[:500])
    by_category = defaultdict(list)
    for row in rows:
        if row.verdict == FeedbackVerdict.REJECT:
            by_category[row.category or "unspecified"].append(row)
    rejections = [Group(cat, len(items), [r.text for r in items if r.text][:3])
                  for cat, items in sorted(by_category.items(), key=lambda kv: -len(kv[1]))]
    edits = [r for r in rows if r.verdict == FeedbackVerdict.MODIFY]
    edited_fields = Counter(field for r in edits for field in (r.argument_diff or {}))
    downs = [r for r in rows if r.verdict == FeedbackVerdict.DOWN]
    return {
        "rows": rows,
        "rejections": rejections,
        "edits": {"count": len(edits), "fields": edited_fields.most_common(8)},
        "ratings_down": {"count": len(downs), "texts": [r.text for r in downs if r.text][:3]},
        "examples": _examples(rows),
    }


def _examples(rows) -> list:
    """A handful of rejected (one per category first, for variety) and edited examples."""
    picked, seen = [], set()
    rejected = [r for r in rows if r.verdict == FeedbackVerdict.REJECT]
    for row in rejected:
        if row.category not in seen:
            picked.append(row)
            seen.add(row.category)
    for row in rejected:
        if len(picked) >= EXAMPLES_PER_KIND:
            break
        if row not in picked:
            picked.append(row)
    picked = picked[:EXAMPLES_PER_KIND]
    picked += [r for r in rows if r.verdict == FeedbackVerdict.MODIFY][:3]
    return picked

from io import StringIO

import pytest

from agents import prompt_demo, services
from agents.models import Prompt, PromptLabel
from agents.prompts import scorecard

pytestmark = pytest.mark.django_db


def test_demo_prompts_are_seeded_once_with_a_canary_and_a_better_version():
    prompt_demo.seed(StringIO())
    prompt_demo.seed(StringIO())
    assert set(Prompt.objects.values_list("name", flat=True)) == {
        "support-reply", "migration-planner", "deploy-planner", "research-summarize"}
    canary = PromptLabel.objects.get(prompt__name="support-reply", name="canary")
    assert canary.version.number == 2 and canary.share == 30 and "generous" in canary.version.template
    assert services.resolve_prompt(name="support-reply", label="canary", caller="x").version.number == 2
    migration = Prompt.objects.get(name="migration-planner")
    v1, v2 = migration.versions.get(number=1), migration.versions.get(number=2)
    assert PromptLabel.objects.get(prompt=migration, name="production").version == v2
    approval = {c.key: c for c in scorecard.compare(scorecard.build_scorecard(v2),
                                                    scorecard.build_scorecard(v1))}["approval"]
    assert approval.significant and approval.a.interval.value > approval.b.interval.value
    assert v2.addressed_feedback.count() == 18


def test_the_demo_canary_is_rolled_back_after_a_few_more_rejections(settings):
    from datetime import timedelta

    from django.utils import timezone

    from agents import jobs
    from tests.agents.test_prompt_fixtures import add_decisions

    settings.PROMPTS_CANARY_MIN_SAMPLE = 20
    prompt_demo.seed(StringIO())
    v2 = Prompt.objects.get(name="support-reply").versions.get(number=2)
    now = timezone.now() + timedelta(seconds=1)
    assert jobs.guard_canaries(now=now) == {"rolled_back": 0, "suggested": 0}  # 12 decisions so far
    add_decisions(v2, reject=6, approve=2, at=now)
    assert jobs.guard_canaries(now=now + timedelta(seconds=1)) == {"rolled_back": 1, "suggested": 0}
    assert not PromptLabel.objects.filter(prompt__name="support-reply", name="canary").exists()

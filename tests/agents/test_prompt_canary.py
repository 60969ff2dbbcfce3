"""The canary guard, both directions, with a fixed clock."""

from datetime import timedelta

import pytest
from django.core import mail

from agents import jobs, services
from agents.models import CanaryOutcome, CanaryVerdict, LabelMove, PromptLabel
from console.models import AuditEntry
from tests import factories
from tests.agents.test_prompt_fixtures import add_decisions, add_version, make_prompt

pytestmark = pytest.mark.django_db


def notices(username="owner") -> list:
    """Channels the owner was notified on: the notification outbox when it exists, else sent mail."""
    try:
        import traces.watchers.playbooks  # noqa: F401
        from approvals.models import Delivery
    except ImportError:
        return ["email" for m in mail.outbox if f"{username}@example.test" in m.to]
    return sorted(Delivery.objects.filter(user__username=username).values_list("channel", flat=True))


@pytest.fixture
def setup(admin_user, fixed_now, settings):
    settings.PROMPTS_CANARY_MIN_SAMPLE = 20
    owner = factories.make_user(None, username="owner")
    prompt = make_prompt(owners=[owner])
    v1 = prompt.versions.get()
    v2 = add_version(prompt, "Be generous with refunds for {ticket}.")
    services.move_label(prompt=prompt, label="production", version=v1, actor=admin_user)
    services.move_label(prompt=prompt, label="canary", version=v2, actor=admin_user, share=10)
    LabelMove.objects.update(created_at=fixed_now - timedelta(hours=2))
    return prompt, v1, v2


def test_a_significantly_worse_canary_is_rolled_back_and_owners_told(setup, fixed_now,
                                                                    django_capture_on_commit_callbacks):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 1, "suggested": 0}
    assert not PromptLabel.objects.filter(prompt=prompt, name="canary").exists()
    verdict = CanaryVerdict.objects.get()
    assert verdict.outcome == CanaryOutcome.ROLLED_BACK and verdict.version == v2
    assert "8/22 approved" in verdict.summary and "45/50" in verdict.summary
    entry = AuditEntry.objects.filter(action="prompt.label_rolled_back").get()
    assert entry.actor == "system:canary-guard"
    assert "email" in notices()
    # production still answers everyone
    assert services.resolve_prompt(name=prompt.name, caller="key:any").version == v1


def test_the_guard_is_idempotent(setup, fixed_now, django_capture_on_commit_callbacks):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.guard_canaries(now=fixed_now)
        assert jobs.guard_canaries(now=fixed_now + timedelta(minutes=1)) == {"rolled_back": 0, "suggested": 0}
    assert CanaryVerdict.objects.count() == 1 and notices().count("email") == 1
    assert LabelMove.objects.filter(is_rollback=True).count() == 1


def test_a_significantly_better_canary_is_suggested_for_promotion_not_promoted(setup, fixed_now,
                                                                              django_capture_on_commit_callbacks):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=25, reject=25, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=21, reject=1, at=fixed_now - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 1}
        assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 0}
    assert CanaryVerdict.objects.get().outcome == CanaryOutcome.PROMOTION_SUGGESTED
    assert notices().count("email") == 1
    labels = dict(PromptLabel.objects.filter(prompt=prompt).values_list("name", "version__number"))
    assert labels == {"production": 1, "canary": 2}


def test_below_the_minimum_sample_nothing_happens(setup, fixed_now):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=1, reject=18, at=fixed_now - timedelta(hours=1))  # 19 < 20
    assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 0}
    assert PromptLabel.objects.filter(prompt=prompt, name="canary").exists()


def test_a_difference_within_noise_is_left_alone(setup, fixed_now):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=40, reject=10, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=16, reject=6, at=fixed_now - timedelta(hours=1))
    assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 0}
    assert not CanaryVerdict.objects.exists()


def test_decisions_after_now_are_not_counted(setup, fixed_now):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now + timedelta(hours=1))
    assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 0}


def test_a_canary_moved_by_an_admin_meanwhile_is_not_touched(setup, fixed_now, admin_user):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now - timedelta(hours=1))
    from agents.prompts import canary

    label = PromptLabel.objects.select_related("prompt", "version").get(name="canary")
    production = PromptLabel.objects.select_related("version").get(name="production")
    details = canary.evaluate(label, production, now=fixed_now)  # the guard has read the canary...
    v3 = add_version(prompt, "v3 {ticket}")
    services.move_label(prompt=prompt, label="canary", version=v3, actor=admin_user, share=10)  # ...then this
    assert canary._roll_back(label, production, details, fixed_now) == 0
    assert PromptLabel.objects.get(name="canary").version == v3
    assert not CanaryVerdict.objects.exists()


def test_a_share_change_continues_the_stint_and_a_new_canary_is_judged_afresh(setup, fixed_now, admin_user):
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now - timedelta(hours=1))
    services.move_label(prompt=prompt, label="canary", version=v2, actor=admin_user, share=20)
    LabelMove.objects.filter(share=20).update(created_at=fixed_now - timedelta(minutes=90))
    assert jobs.guard_canaries(now=fixed_now)["rolled_back"] == 1  # the share change did not reset the window
    # An Admin tries v2 again later: its old rejections belong to the old stint.
    later = fixed_now + timedelta(days=1)
    services.move_label(prompt=prompt, label="canary", version=v2, actor=admin_user, share=10)
    LabelMove.objects.filter(pk=LabelMove.objects.latest("id").pk).update(created_at=later - timedelta(hours=2))
    assert jobs.guard_canaries(now=later) == {"rolled_back": 0, "suggested": 0}
    add_decisions(v2, approve=5, reject=17, at=later - timedelta(hours=1))
    assert jobs.guard_canaries(now=later) == {"rolled_back": 1, "suggested": 0}
    assert CanaryVerdict.objects.filter(version=v2, outcome=CanaryOutcome.ROLLED_BACK).count() == 2


def _runs_with_incidents(agent, version, *, runs, incidents, at):
    from django.apps import apps

    Run, Incident = apps.get_model("traces", "Run"), apps.get_model("traces", "Incident")
    for i in range(runs):
        run = Run.objects.create(trace_id=f"{version.pk:04x}{i:028x}", agent=agent, status="ok", started_at=at,
                                 prompt_name=version.prompt.name, prompt_version=str(version.number))
        if i < incidents:
            Incident.objects.create(kind="loop", dedupe_key=f"loop:{run.trace_id}", agent=agent, run=run,
                                    trace_id=run.trace_id, title="loop", opened_at=at)


def test_a_canary_with_significantly_more_incidents_is_rolled_back(setup, fixed_now, agent):
    pytest.importorskip("traces.incident_models")
    prompt, v1, v2 = setup
    at = fixed_now - timedelta(hours=1)
    _runs_with_incidents(agent, v1, runs=40, incidents=1, at=at)
    _runs_with_incidents(agent, v2, runs=20, incidents=8, at=at)
    # no decisions at all: incidents alone decide
    assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 1, "suggested": 0}
    verdict = CanaryVerdict.objects.get()
    assert "Runs with an incident: canary 8/20 vs production 1/40" in verdict.summary
    assert not PromptLabel.objects.filter(prompt=prompt, name="canary").exists()


def test_incidents_below_the_minimum_sample_are_not_judged(setup, fixed_now, agent):
    pytest.importorskip("traces.incident_models")
    prompt, v1, v2 = setup
    at = fixed_now - timedelta(hours=1)
    _runs_with_incidents(agent, v1, runs=40, incidents=0, at=at)
    _runs_with_incidents(agent, v2, runs=10, incidents=8, at=at)
    assert jobs.guard_canaries(now=fixed_now) == {"rolled_back": 0, "suggested": 0}


def test_the_scorecard_counts_runs_with_an_incident(setup, fixed_now, agent):
    pytest.importorskip("traces.incident_models")
    from agents.prompts import scorecard

    _prompt, _v1, v2 = setup
    _runs_with_incidents(agent, v2, runs=10, incidents=2, at=fixed_now)
    metric = scorecard.build_scorecard(v2).metrics["incidents"]
    assert (metric.successes, metric.n) == (2, 10)


def test_without_the_outbox_owners_get_plain_email(setup, fixed_now, monkeypatch,
                                                   django_capture_on_commit_callbacks):
    import builtins

    real_import = builtins.__import__

    def no_watchers(name, *args, **kwargs):
        if name == "traces.watchers.playbooks":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_watchers)
    prompt, v1, v2 = setup
    add_decisions(v1, approve=45, reject=5, at=fixed_now - timedelta(hours=1))
    add_decisions(v2, approve=8, reject=14, at=fixed_now - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.guard_canaries(now=fixed_now)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["owner@example.test"]
    assert "rolled back automatically" in mail.outbox[0].subject

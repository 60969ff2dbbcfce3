"""Earned autonomy: proposal from a track record, Admin ratification, demotion at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services as approval_services
from approvals.models import Delivery, GuardianRule, Status
from console.models import AuditEntry
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule
from tests.traces.test_watchers_support import watching  # noqa: F401
from traces.incident_models import AutonomyBar, AutonomyGrant, DetectorKind, GrantStatus, Incident
from traces.watchers import autonomy, jobs, services
from traces.watchers.detectors import Finding

pytestmark = pytest.mark.django_db

ACTION = "crm.update_note"


@pytest.fixture
def setup(agent, watching):
    AutonomyBar.objects.create(min_decisions=10, min_unedited_rate=0.9, no_rejections_in_last=5, incident_free_days=14)
    queue = make_queue("crm")
    ask_rule = make_rule(name="crm-asks", action_pattern="crm.*", outcome="ask", queue=queue, order=10)
    reviewer = make_reviewer(queue, "crm-reviewer")
    owner = factories.make_user(None, username="owner")
    agent.owner = owner
    agent.save(update_fields=["owner"])
    return {"queue": queue, "reviewer": reviewer, "ask_rule": ask_rule, "agent": agent}


def decide(setup, verdicts, *, risk="medium"):
    for verdict in verdicts:
        req = make_request(agent=setup["agent"], action=ACTION, risk=risk, arguments={"note": "x"})
        assert req.status == Status.PENDING
        approval_services.decide_request(request_id=req.pk, reviewer=setup["reviewer"], verdict=verdict,
                                         reason="ok", arguments={"note": "y"} if verdict == "modify" else None)


def test_a_clean_record_earns_a_disabled_rule_proposal(setup):
    decide(setup, ["approve"] * 10)
    grants = autonomy.propose_grants()
    assert len(grants) == 1
    grant = grants[0]
    assert grant.status == GrantStatus.PROPOSED and grant.action == ACTION and grant.risk == "medium"
    assert grant.evidence["decisions"] == 10 and grant.evidence["approved_unedited"] == 10
    rule = grant.rule
    assert not rule.enabled and rule.outcome == "allow" and rule.agent == setup["agent"]
    assert rule.action_pattern == ACTION and rule.risks == ["medium"] and rule.order < setup["ask_rule"].order
    assert autonomy.propose_grants() == []  # idempotent: one open proposal
    assert AuditEntry.objects.filter(action="autonomy.proposed").count() == 1
    # Not ratified: still a human's call.
    assert make_request(agent=setup["agent"], action=ACTION, risk="medium").status == Status.PENDING


@pytest.mark.parametrize("verdicts", [
    ["approve"] * 9,                                   # too few decisions
    ["approve"] * 9 + ["modify"] * 2,                  # 82% unedited
    ["approve"] * 10 + ["reject"] + ["approve"] * 2,   # a rejection among the last 5
])
def test_records_below_the_bar_are_not_proposed(setup, verdicts):
    decide(setup, verdicts)
    assert autonomy.propose_grants() == []


def test_a_recent_incident_blocks_the_proposal(setup):
    decide(setup, ["approve"] * 10)
    services.open_incident(finding=Finding(kind=DetectorKind.SCORE, agent_id=setup["agent"].pk, dedupe_key="s",
                                           title="score"))
    assert autonomy.propose_grants() == []


def test_admin_ratifies_then_the_action_is_auto_approved(setup, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    autonomy.ratify(grant_id=grant.pk, user=admin_user, note="earned")
    assert GuardianRule.objects.get(pk=grant.rule_id).enabled
    req = make_request(agent=setup["agent"], action=ACTION, risk="medium")
    assert req.status == Status.APPROVED and req.decider == f"rule:{grant.rule.name}"
    # Other risks and other actions still go to people.
    assert make_request(agent=setup["agent"], action=ACTION, risk="high").status == Status.PENDING
    assert make_request(agent=setup["agent"], action="crm.delete", risk="medium").status == Status.PENDING
    with pytest.raises(autonomy.GrantError):
        autonomy.ratify(grant_id=grant.pk, user=admin_user)
    assert AuditEntry.objects.filter(action="autonomy.ratified", actor="user:ada").count() == 1


def test_only_admins_ratify_or_decline(setup, clients_by_role):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    for role in ("reviewer", "operator"):
        assert clients_by_role[role].post(f"/autonomy/{grant.pk}/ratify/").status_code == 403
    assert clients_by_role["admin"].post(f"/autonomy/{grant.pk}/decline/", {"note": "not yet"}).status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.DECLINED and not grant.rule.enabled
    assert autonomy.propose_grants() == []  # declined lately: not asked again at once


def test_a_rejection_after_ratification_demotes_at_once_and_tells_the_owners(setup, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    waiting = make_request(agent=setup["agent"], action=ACTION, risk="medium")  # asked before ratification
    autonomy.ratify(grant_id=grant.pk, user=admin_user)
    Delivery.objects.all().delete()
    approval_services.decide_request(request_id=waiting.pk, reviewer=setup["reviewer"], verdict="reject",
                                     reason="wrong customer")
    assert jobs.watch_decisions(now=timezone.now()) == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.DEMOTED and "rejected" in grant.demoted_reason
    assert not GuardianRule.objects.get(pk=grant.rule_id).enabled
    assert make_request(agent=setup["agent"], action=ACTION, risk="medium").status == Status.PENDING
    told = set(Delivery.objects.values_list("recipient", flat=True))
    assert "owner" in told and "ada" in told
    assert jobs.watch_decisions(now=timezone.now()) == 0  # the cursor moved on


def test_an_edit_demotes_too(setup, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    waiting = make_request(agent=setup["agent"], action=ACTION, risk="medium")
    autonomy.ratify(grant_id=grant.pk, user=admin_user)
    approval_services.decide_request(request_id=waiting.pk, reviewer=setup["reviewer"], verdict="modify",
                                     reason="fix", arguments={"note": "z"})
    jobs.watch_decisions(now=timezone.now())
    assert AutonomyGrant.objects.get(pk=grant.pk).status == GrantStatus.DEMOTED


def test_an_incident_demotes_in_the_same_transaction(setup, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    autonomy.ratify(grant_id=grant.pk, user=admin_user)
    incident = services.open_incident(finding=Finding(kind=DetectorKind.LOOP, agent_id=setup["agent"].pk,
                                                      dedupe_key="l", title="loop"))
    grant.refresh_from_db()
    assert grant.status == GrantStatus.DEMOTED and f"incident #{incident.pk}" in grant.demoted_reason
    assert [e.event for e in grant.events.all()] == ["demoted", "ratified", "proposed"]


def test_after_demotion_only_new_decisions_count(setup, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    autonomy.demote(grant_id=grant.pk, reason="test", now=timezone.now())
    assert autonomy.propose_grants() == []
    later = timezone.now() + timedelta(seconds=1)
    passes, record = autonomy.evaluate(agent_id=setup["agent"].pk, action=ACTION, risk="medium", now=later)
    assert not passes and record.total == 0


def test_autonomy_page_shows_levels_and_history(setup, admin_client_, admin_user):
    decide(setup, ["approve"] * 10)
    grant = autonomy.propose_grants()[0]
    html = admin_client_.get("/autonomy/").content.decode()
    assert ACTION in html and "proposed" in html and "Ratify" in html
    autonomy.ratify(grant_id=grant.pk, user=admin_user)
    html = admin_client_.get("/autonomy/").content.decode()
    assert "auto-approved" in html and "ratified by user:ada" in html


def test_admin_sets_the_bar(admin_client_, operator_client, watching):
    data = {"min_decisions": "60", "min_unedited_rate": "0.97", "no_rejections_in_last": "25",
            "incident_free_days": "7"}
    assert operator_client.post("/autonomy/bar/", data).status_code == 403
    admin_client_.post("/autonomy/bar/", data)
    assert autonomy.bar().min_decisions == 60 and autonomy.bar().incident_free_days == 7
    admin_client_.post("/autonomy/bar/", {**data, "min_unedited_rate": "3"})
    assert autonomy.bar().min_unedited_rate == 0.97
    assert Incident.objects.count() == 0

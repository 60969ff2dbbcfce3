"""Admin editors: queues, SLAs, escalation matrix, guardian rules, dry run; all audited."""

import pytest

from approvals.models import EscalationMatrix, GuardianRule, Outcome, Queue, SlaPolicy, Status
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from tests.approvals.test_views import HTMX, make_pending, make_queue


@pytest.fixture
def queue(reviewer):
    return make_queue("billing", reviewer)


def level(i, **over):
    data = {f"level-{i}-after_minutes": "0", f"level-{i}-repeat_count": "0",
            f"level-{i}-repeat_interval_minutes": "10", f"level-{i}-queue_reviewers": "on",
            f"level-{i}-webhook_format": "generic", f"level-{i}-email": "on"}
    for key, value in over.items():
        full = f"level-{i}-{key}"
        if value is None:
            data.pop(full, None)
        else:
            data[full] = value
    return data


# --- queues ----------------------------------------------------------------------------------------


def test_admin_creates_a_queue_and_it_is_audited(admin_client_):
    response = admin_client_.post("/queues/", {"name": "payments", "description": "money out"})
    queue = Queue.objects.get(name="payments")
    assert response.status_code == 302 and response["Location"] == f"/queues/{queue.pk}/"
    assert AuditEntry.objects.filter(action="queue.created", target_id=str(queue.pk)).exists()


def test_duplicate_queue_name_is_named_beside_the_field(admin_client_, queue):
    response = admin_client_.post("/queues/", {"name": "billing"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_admin_sets_members_and_slas_audited(admin_client_, queue, reviewer):
    other = factories.make_user(Role.REVIEWER, username="carl")
    response = admin_client_.post(f"/queues/{queue.pk}/", {
        "description": "refunds", "members": [reviewer.pk, other.pk],
        "sla_critical": "5", "sla_high": "30", "sla_medium": "240", "sla_low": "1440"})
    assert response.status_code == 302
    assert set(queue.members.values_list("username", flat=True)) == {"rita", "carl"}
    assert SlaPolicy.objects.get(queue=queue, risk="critical").minutes == 5
    assert not SlaPolicy.objects.filter(queue=queue, risk="high").exists()  # unchanged default: no row
    members = AuditEntry.objects.get(action="queue.members_changed")
    assert members.before == {"members": [reviewer.pk]} and sorted(members.after["members"]) == sorted(
        [reviewer.pk, other.pk])
    assert AuditEntry.objects.filter(action="sla_policy.updated").count() == 1


def test_admin_turns_on_four_eyes_for_critical_and_new_critical_requests_need_two(admin_client_, queue, agent):
    from tests.approvals.helpers import make_request, make_rule

    form = {"description": "", "sla_critical": "10", "sla_high": "30", "sla_medium": "240", "sla_low": "1440"}
    page = admin_client_.get(f"/queues/{queue.pk}/").content.decode()
    assert "Critical needs two reviewers" in page and 'name="two_critical" id="id_two_critical" checked' not in page
    response = admin_client_.post(f"/queues/{queue.pk}/", {**form, "two_critical": "on"})
    assert response.status_code == 302
    assert SlaPolicy.objects.get(queue=queue, risk="critical").required_approvals == 2
    entry = AuditEntry.objects.get(action="sla_policy.updated")
    assert entry.after["required_approvals"] == 2 and entry.after["risk"] == "critical"
    assert 'name="two_critical" id="id_two_critical" checked' in admin_client_.get(f"/queues/{queue.pk}/").content.decode()

    make_rule(name="billing-all", action_pattern="billing.*", queue=queue)
    assert make_request(agent=agent, action="billing.refund", risk="critical").required_approvals == 2
    assert make_request(agent=agent, action="billing.refund", risk="high").required_approvals == 1

    admin_client_.post(f"/queues/{queue.pk}/", form)  # unticked: back to one
    assert SlaPolicy.objects.get(queue=queue, risk="critical").required_approvals == 1
    assert make_request(agent=agent, action="billing.refund", risk="critical").required_approvals == 1


def test_bad_sla_names_the_field_and_keeps_input(admin_client_, queue):
    response = admin_client_.post(f"/queues/{queue.pk}/", {
        "sla_critical": "0", "sla_high": "30", "sla_medium": "abc", "sla_low": "1440"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="abc"' in html and "greater than or equal to 1" in html


# --- escalation matrix ---------------------------------------------------------------------------------


def test_matrix_saves_levels_and_audits_before_after(admin_client_, queue, reviewer):
    data = {"op": "save", "breach_action": "expire_rejected", **level(0, after_minutes="0"),
            **level(1, after_minutes="15", queue_reviewers=None, users=str(reviewer.pk), repeat_count="2")}
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/", data)
    assert response.status_code == 302
    matrix = EscalationMatrix.objects.get(queue=queue)
    levels = list(matrix.levels.order_by("order"))
    assert [lv.after_minutes for lv in levels] == [0, 15]
    assert list(levels[1].users.values_list("pk", flat=True)) == [reviewer.pk]
    assert matrix.breach_action == "expire_rejected"
    entry = AuditEntry.objects.get(action="escalation_matrix.updated")
    assert entry.after["levels"][1]["repeat_count"] == 2


def test_matrix_level_without_recipients_is_refused_beside_it(admin_client_, queue):
    data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0),
            **level(1, after_minutes="20", queue_reviewers=None)}
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/", data, **HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    second = html.split('id="level-1"')[1]
    assert "Level 2 has no recipients" in second.split("</li>")[0]
    assert 'value="20"' in second  # input kept
    assert not EscalationMatrix.objects.filter(queue=queue).exists()


def test_matrix_delays_must_increase_error_is_on_the_field(admin_client_, queue):
    data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0, after_minutes="30"),
            **level(1, after_minutes="10")}
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field-error="level-1-after_minutes"' in html and "delays must increase" in html


def test_matrix_add_and_remove_level_rerender_without_saving(admin_client_, queue):
    data = {"op": "add", "breach_action": "keep_pending_and_page", **level(0, after_minutes="5")}
    html = admin_client_.post(f"/queues/{queue.pk}/matrix/", data, **HTMX).content.decode()
    assert html.count('data-testid="matrix-level"') == 2
    assert 'name="level-1-after_minutes" value="20"' in html  # next level suggested 15 min later
    assert html.startswith('<form id="matrix-form"')
    data = {"op": "remove-0", "breach_action": "keep_pending_and_page", **level(0), **level(1, after_minutes="9")}
    html = admin_client_.post(f"/queues/{queue.pk}/matrix/", data, **HTMX).content.decode()
    assert html.count('data-testid="matrix-level"') == 1 and 'value="9"' in html
    assert not EscalationMatrix.objects.filter(queue=queue).exists()
    assert not AuditEntry.objects.filter(action__startswith="escalation_matrix").exists()


def test_reapply_matrix_is_explicit_and_audited(admin_client_, queue, agent):
    req = make_pending(agent, queue)
    admin_client_.post(f"/queues/{queue.pk}/matrix/", {"op": "save", "breach_action": "keep_pending_and_page",
                                                        **level(0, after_minutes="3")})
    req.refresh_from_db()
    assert req.escalation_snapshot["levels"][0]["after_minutes"] == 0  # unchanged until re-applied
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/reapply/")
    assert response.status_code == 302
    req.refresh_from_db()
    assert req.escalation_snapshot["levels"][0]["after_minutes"] == 3
    assert AuditEntry.objects.get(action="escalation_matrix.reapplied").after["requests"] == 1


# --- guardian rules ------------------------------------------------------------------------------------


def rule_data(**over):
    data = {"op": "save", "name": "big-refunds", "order": "5", "enabled": "on", "action_pattern": "refund*",
            "risks": ["high"], "outcome": "ask", "required_approvals": "1",
            "cond-0-field": "amount", "cond-0-op": ">", "cond-0-value": "500"}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def test_admin_creates_a_rule_with_conditions_audited(admin_client_, queue):
    response = admin_client_.post("/policies/rules/new/", rule_data(queue=str(queue.pk)))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = GuardianRule.objects.get(name="big-refunds")
    assert rule.conditions == [{"field": "amount", "op": ">", "value": 500}]
    assert rule.risks == ["high"] and rule.queue == queue
    assert AuditEntry.objects.filter(action="guardian_rule.created", target_id=str(rule.pk)).exists()


def test_ask_rule_without_queue_is_refused_with_the_core_reason(admin_client_):
    response = admin_client_.post("/policies/rules/new/", rule_data())
    assert response.status_code == 400
    html = response.content.decode()
    assert "must name the queue" in html and 'value="big-refunds"' in html


def test_bad_condition_is_refused_beside_its_row(admin_client_, queue):
    response = admin_client_.post("/policies/rules/new/", rule_data(
        queue=str(queue.pk), **{"cond-1-field": "to_domain", "cond-1-op": "in", "cond-1-value": '"example.com"'}),
        **HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Condition 2" in html and "needs a list value" in html
    assert 'data-testid="condition-error"' in html
    assert not GuardianRule.objects.filter(name="big-refunds").exists()


def test_rule_edit_and_toggle_are_audited_with_before_after(admin_client_, queue):
    rule = GuardianRule.objects.create(name="deny-prod", action_pattern="deploy", outcome=Outcome.DENY, order=1)
    response = admin_client_.post(f"/policies/rules/{rule.pk}/", rule_data(
        name="deny-prod", outcome="deny", action_pattern="deploy*", **{"cond-0-field": "environment",
                                                                       "cond-0-op": "==",
                                                                       "cond-0-value": "prod"}))
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.action_pattern == "deploy*" and rule.conditions[0]["value"] == "prod"
    entry = AuditEntry.objects.get(action="guardian_rule.updated")
    assert entry.before["action_pattern"] == "deploy" and entry.after["action_pattern"] == "deploy*"
    html = admin_client_.post(f"/policies/rules/{rule.pk}/toggle/", **HTMX).content.decode()
    assert "disabled" in html and html.startswith(f'<tr id="rule-{rule.pk}"')
    rule.refresh_from_db()
    assert rule.enabled is False


def test_condition_rows_are_added_and_removed(admin_client_, queue):
    html = admin_client_.post("/policies/rules/new/", rule_data(op="add"), **HTMX).content.decode()
    assert html.count('data-testid="condition-row"') == 2
    html = admin_client_.post("/policies/rules/new/", rule_data(op="remove-0"), **HTMX).content.decode()
    assert html.count('data-testid="condition-row"') == 0
    assert not GuardianRule.objects.exists() or not GuardianRule.objects.filter(name="big-refunds").exists()


def test_dry_run_shows_which_rule_recent_requests_would_hit(admin_client_, agent, queue):
    req = make_pending(agent, queue, action="refund", arguments={"amount": 900})
    response = admin_client_.get("/policies/rules/dry-run/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'/approvals/{req.pk}/' in html and "to-billing" in html
    draft = admin_client_.post("/policies/rules/new/", rule_data(
        op="dry_run", name="deny-big", outcome="deny", order="1", action_pattern="billing.*",
        **{"cond-0-value": "500"}), **HTMX).content.decode()
    row = draft.split(f'/approvals/{req.pk}/')[1].split("</tr>")[0]
    assert "deny-big" in row and "changed" in row
    assert not GuardianRule.objects.filter(name="deny-big").exists()
    req.refresh_from_db()
    assert req.status == Status.PENDING

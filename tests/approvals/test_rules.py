import pytest
from django.core.exceptions import ValidationError

from approvals.services.rules import condition_holds, first_matching_rule
from tests.approvals.helpers import make_queue, make_rule


@pytest.mark.parametrize("cond, args, expected", [
    ({"field": "amount", "op": ">", "value": 500}, {"amount": 501}, True),
    ({"field": "amount", "op": ">", "value": 500}, {"amount": 500}, False),
    ({"field": "amount", "op": ">=", "value": 500}, {"amount": "500"}, True),
    ({"field": "amount", "op": "<", "value": 10}, {"amount": 9.5}, True),
    ({"field": "amount", "op": "<=", "value": 10}, {"amount": "lots"}, False),
    ({"field": "environment", "op": "==", "value": "prod"}, {"environment": "prod"}, True),
    ({"field": "environment", "op": "==", "value": "prod"}, {"environment": "staging"}, False),
    ({"field": "environment", "op": "!=", "value": "prod"}, {"environment": "staging"}, True),
    ({"field": "zip", "op": "==", "value": "01234"}, {"zip": "1234"}, False),
    ({"field": "flag", "op": "==", "value": True}, {"flag": 1}, False),
    ({"field": "to_domain", "op": "not in", "value": ["example.com", "corp.test"]}, {"to_domain": "evil.test"}, True),
    ({"field": "to_domain", "op": "not in", "value": ["example.com"]}, {"to_domain": "example.com"}, False),
    ({"field": "to_domain", "op": "in", "value": ["example.com"]}, {"to_domain": "example.com"}, True),
    ({"field": "tags", "op": "contains", "value": "vip"}, {"tags": ["new", "vip"]}, True),
    ({"field": "sql", "op": "contains", "value": "DROP"}, {"sql": "DROP TABLE x"}, True),
    ({"field": "sql", "op": "matches", "value": r"(?i)^\s*delete\b"}, {"sql": "  Delete from t"}, True),
    ({"field": "sql", "op": "matches", "value": r"^delete"}, {"sql": 42}, False),
    ({"field": "customer.country", "op": "==", "value": "FR"}, {"customer": {"country": "FR"}}, True),
    ({"field": "items.0.sku", "op": "==", "value": "A"}, {"items": [{"sku": "A"}]}, True),
])
def test_conditions_evaluate_without_eval(cond, args, expected):
    assert condition_holds(cond, args) is expected


@pytest.mark.parametrize("op", ["==", "!=", ">", "not in", "contains", "matches"])
def test_a_missing_field_never_matches(op):
    value = ["x"] if op == "not in" else "x"
    assert condition_holds({"field": "absent", "op": op, "value": value}, {"amount": 1}) is False


def test_a_python_expression_in_a_value_is_only_data():
    cond = {"field": "amount", "op": "==", "value": "__import__('os').system('false')"}
    assert condition_holds(cond, {"amount": 1}) is False


@pytest.mark.django_db
@pytest.mark.parametrize("conditions, reason", [
    ([{"field": "amount", "op": "=>", "value": 5}], "unknown operator"),
    ([{"field": "amount", "op": "in", "value": "a,b"}], "needs a list"),
    ([{"field": "amount", "op": "matches", "value": "("}], "invalid regular expression"),
    ([{"field": "amount; drop", "op": "==", "value": 1}], "field must be"),
    ([{"field": "amount", "op": ">", "value": [1]}], "number or a string"),
    ([{"field": "amount", "op": ">"}], "exactly field, op and value"),
    ({"field": "amount"}, "must be a list"),
    ([{"field": "amount", "op": "==", "value": 1, "extra": 2}], "exactly field, op and value"),
])
def test_bad_conditions_are_rejected_on_save_with_the_reason(conditions, reason):
    if reason is None:
        make_rule(conditions=conditions, outcome="deny")
        return
    with pytest.raises(ValidationError) as info:
        make_rule(conditions=conditions, outcome="deny")
    assert reason in str(info.value)


@pytest.mark.django_db
def test_an_ask_rule_must_name_a_queue():
    with pytest.raises(ValidationError, match="must name the queue"):
        make_rule(outcome="ask", queue=None)


@pytest.mark.django_db
def test_unknown_risks_are_rejected():
    with pytest.raises(ValidationError, match="Risks must be"):
        make_rule(outcome="deny", risks=["urgent"])


@pytest.mark.django_db
def test_rules_apply_in_order_and_filter_by_agent_action_and_risk(agent):
    from tests.factories import make_agent

    queue = make_queue()
    other = make_agent("other-bot")
    make_rule(name="other-agent-only", order=1, agent=other, outcome="deny")
    make_rule(name="refunds-big", order=2, action_pattern="refunds.*", queue=queue,
              conditions=[{"field": "amount", "op": ">", "value": 500}])
    make_rule(name="refunds-small", order=3, action_pattern="refunds.*", outcome="allow")
    make_rule(name="critical-only", order=4, action_pattern="*", risks=["critical"], outcome="deny")
    make_rule(name="disabled", order=0, enabled=False, outcome="deny")

    def hit(action, risk, args):
        rule = first_matching_rule(agent_id=agent.pk, action=action, risk=risk, arguments=args)
        return rule.name if rule else None

    assert hit("refunds.issue", "high", {"amount": 900}) == "refunds-big"
    assert hit("refunds.issue", "high", {"amount": 20}) == "refunds-small"
    assert hit("deploy", "critical", {}) == "critical-only"
    assert hit("deploy", "high", {}) is None
    assert first_matching_rule(agent_id=other.pk, action="x", risk="low", arguments={}).name == "other-agent-only"


@pytest.mark.django_db
def test_dry_run_shows_which_rule_recent_requests_would_hit(agent):
    from approvals.models import GuardianRule
    from approvals.services import dry_run
    from tests.approvals.helpers import make_request

    make_request(agent=agent, action="refunds.issue", risk="high", arguments={"amount": 900})
    proposed = [GuardianRule(name="deny-refunds", action_pattern="refunds.*", outcome="deny", order=1)]
    rows = dry_run(rules=proposed)
    assert [(r.rule.name, r.outcome, r.changed) for r in rows] == [("deny-refunds", "deny", True)]


@pytest.mark.django_db
@pytest.mark.timeout(120)  # a hang guard: Python's backtracking engine takes hours on this input
def test_an_agent_cannot_stall_rule_matching_with_input_crafted_against_an_admins_regex(agent):
    """'matches' runs an admin's pattern on agent-sent arguments (up to 64 KiB): it runs in linear time."""
    from tests.approvals.helpers import make_request

    queue = make_queue("sql")
    make_rule(name="nested", action_pattern="db.*", outcome="deny", order=1,
              conditions=[{"field": "note", "op": "matches", "value": r"^(a|aa)+$"}])
    make_rule(name="quadratic", action_pattern="db.*", outcome="deny", order=2,
              conditions=[{"field": "digits", "op": "matches", "value": r"\d+x"}])
    make_rule(name="to-sql", action_pattern="db.*", outcome="ask", queue=queue, order=3)
    req = make_request(agent=agent, action="db.query", risk="high",
                       arguments={"note": "a" * 60 + "!", "digits": "1" * 60_000})
    assert req.status == "pending" and req.queue_id == queue.pk  # neither pattern matched; the rule after did


@pytest.mark.django_db
def test_a_pattern_the_linear_engine_cannot_run_is_refused_on_save():
    with pytest.raises(ValidationError, match="back-references"):
        make_rule(outcome="deny", conditions=[{"field": "sql", "op": "matches", "value": r"(a)\1"}])

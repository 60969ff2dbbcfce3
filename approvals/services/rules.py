"""Guardian rules: which rule an action hits, evaluated without ``eval``; rule edits, audited."""

import fnmatch
import operator
from dataclasses import dataclass

from django.db import transaction

from approvals.models import ApprovalRequest, GuardianRule, Outcome, Risk
from console import audit
from console.linear_regex import UnsupportedPattern, compile_linear

_MISSING = object()

_COMPARE = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
            "<": operator.lt, "<=": operator.le}


def lookup(arguments, field: str):
    """The value at a dotted path (``customer.country``, ``items.0.sku``); _MISSING if absent."""
    value = arguments
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _comparable(a, b):
    """Numbers compare with numbers (numeric strings count), strings with strings."""
    def as_number(v):
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return None
        return None

    na, nb = as_number(a), as_number(b)
    if na is not None and nb is not None:
        return na, nb
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None


def _equal(a, b) -> bool:
    """Equality where 500 == "500" == 500.0, but True is never 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    pair = _comparable(a, b)
    return pair[0] == pair[1] if pair else a == b


def condition_holds(cond: dict, arguments) -> bool:
    """One condition on the arguments. A missing field or mismatched types never match.

    Fail-safe note: a missing field makes *every* operator false (also ``!=`` and
    ``not in``), so a rule never fires on data it cannot see.
    """
    op, expected = cond["op"], cond.get("value")
    actual = lookup(arguments, cond["field"])
    if actual is _MISSING:
        return False
    if op in ("==", "!="):
        equal = _equal(actual, expected)
        return equal if op == "==" else not equal
    if op in _COMPARE:
        pair = _comparable(actual, expected)
        return bool(pair) and _COMPARE[op](*pair)
    if op in ("in", "not in"):
        found = any(_equal(actual, item) for item in expected)
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return expected in actual
        if isinstance(actual, dict):
            return expected in actual
        return False
    if op == "matches":  # linear time: the text is the agent's, the pattern an admin's
        if not isinstance(actual, str):
            return False
        try:
            return compile_linear(expected).search(actual) is not None
        except UnsupportedPattern:
            return False  # saved before patterns were checked for RE2; like a missing field, never matches
    return False


def rule_matches(rule: GuardianRule, *, agent_id: int, action: str, risk: str, arguments) -> bool:
    if not rule.enabled:
        return False
    if rule.agent_id is not None and rule.agent_id != agent_id:
        return False
    if not fnmatch.fnmatchcase(action, rule.action_pattern):
        return False
    if rule.risks and risk not in rule.risks:
        return False
    return all(condition_holds(cond, arguments) for cond in (rule.conditions or []))


def first_matching_rule(*, agent_id: int, action: str, risk: str, arguments,
                        rules: list[GuardianRule] | None = None) -> GuardianRule | None:
    """The first enabled rule, in order, that matches; None when none does."""
    if rules is None:
        rules = list(GuardianRule.objects.filter(enabled=True).select_related("queue").order_by("order", "id"))
    for rule in rules:
        if rule_matches(rule, agent_id=agent_id, action=action, risk=risk, arguments=arguments):
            return rule
    return None


@dataclass
class DryRunRow:
    request: ApprovalRequest
    rule: GuardianRule | None
    outcome: str
    was_rule: str | None

    @property
    def changed(self) -> bool:
        """Would it hit a different rule than it did (compared by name: proposed rules may be unsaved)?"""
        return (self.rule.name if self.rule else None) != self.was_rule


def unmatched_outcome(risk: str) -> str:
    from django.conf import settings

    if risk in (Risk.HIGH, Risk.CRITICAL):
        return Outcome.ASK
    return getattr(settings, "APPROVALS_UNMATCHED_LOW_MEDIUM", Outcome.ALLOW)


def dry_run(*, rules: list[GuardianRule] | None = None, limit: int = 200) -> list[DryRunRow]:
    """Which rule each of the ``limit`` most recent requests would hit under ``rules`` (default: the saved ones)."""
    if rules is None:
        rules = list(GuardianRule.objects.filter(enabled=True).select_related("queue").order_by("order", "id"))
    rows = []
    for req in ApprovalRequest.objects.select_related("agent", "matched_rule").order_by("-id")[:limit]:
        rule = first_matching_rule(agent_id=req.agent_id, action=req.action, risk=req.risk,
                                   arguments=req.arguments, rules=rules)
        rows.append(DryRunRow(req, rule, rule.outcome if rule else unmatched_outcome(req.risk),
                              req.matched_rule.name if req.matched_rule_id else None))
    return rows


def _rule_state(rule: GuardianRule) -> dict:
    return {"name": rule.name, "order": rule.order, "enabled": rule.enabled, "agent_id": rule.agent_id,
            "action_pattern": rule.action_pattern, "risks": rule.risks, "conditions": rule.conditions,
            "outcome": rule.outcome, "queue_id": rule.queue_id, "required_approvals": rule.required_approvals}


def save_rule(*, rule: GuardianRule, actor) -> GuardianRule:
    """Validate (ValidationError with the reason) and save a rule; audited with before/after."""
    with transaction.atomic():
        before = None
        if rule.pk:
            old = GuardianRule.objects.filter(pk=rule.pk).first()
            before = _rule_state(old) if old else None
        rule.save()  # full_clean inside
        audit.record(actor=actor, action="guardian_rule.created" if before is None else "guardian_rule.updated",
                     target=rule, before=before, after=_rule_state(rule))
    return rule


def delete_rule(*, rule_id: int, actor) -> None:
    with transaction.atomic():
        rule = GuardianRule.objects.select_for_update().get(pk=rule_id)
        before = _rule_state(rule)
        audit.record(actor=actor, action="guardian_rule.deleted", target=rule, before=before)
        rule.delete()

import json

import pytest

from traces import jobs, redaction
from traces.models import RedactionRule, Run, Span
from tests.traces import helpers

pytestmark = pytest.mark.django_db

SECRET_EMAIL = "jane.roe@example.com"
SECRET_CARD = "4111 1111 1111 1111"
SECRET_KEY = "sk-proj-A1b2C3d4E5f6G7h8I9j0KLMN"
SECRET_PHONE = "+1 415-555-0132"


@pytest.fixture(autouse=True)
def fresh_rules():
    redaction.invalidate_cache()
    yield
    redaction.invalidate_cache()


def _everything_stored() -> str:
    rows = list(Span.objects.values()) + list(Run.objects.values())
    return json.dumps(rows, default=str)


def test_builtin_patterns_never_reach_the_database(client, agent_key):
    text = f"Mail {SECRET_EMAIL}, card {SECRET_CARD}, call {SECRET_PHONE}, key {SECRET_KEY}."
    spans = helpers.record_agent_run(input_text=text, task=f"help {SECRET_EMAIL}")
    response = helpers.post(client, helpers.protobuf_body(spans), key=agent_key)
    assert response.status_code == 200
    stored = _everything_stored()
    for secret in (SECRET_EMAIL, SECRET_CARD, SECRET_KEY, "415-555-0132"):
        assert secret not in stored
    llm = Span.objects.get(kind="llm")
    assert "[REDACTED:email]" in llm.input_text and "[REDACTED:card]" in llm.input_text
    assert "[REDACTED:api-key]" in llm.input_text and "[REDACTED:phone]" in llm.input_text
    assert llm.redaction_count == 4
    assert Run.objects.get().task == "help [REDACTED:email]"


def test_attributes_tool_arguments_and_events_are_redacted(client, agent_key):
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, attrs={"customer.email": SECRET_EMAIL, "gen_ai.tool.name": "charge",
                                           "gen_ai.tool.call.arguments": json.dumps({"card": SECRET_CARD})})
    event = span.events.add(name="note", time_unix_nano=span.start_time_unix_nano)
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    event.attributes.append(KeyValue(key="text", value=AnyValue(string_value=f"key {SECRET_KEY}")))
    assert helpers.post(client, helpers.body_of(span), key=agent_key).status_code == 200
    stored = Span.objects.get()
    assert stored.attributes["customer.email"] == "[REDACTED:email]"
    assert stored.tool_arguments == {"card": "[REDACTED:card]"}
    assert stored.events[0]["attributes"]["text"] == "key [REDACTED:api-key]"
    assert stored.redaction_count == 3
    assert SECRET_EMAIL not in _everything_stored()


def test_admin_rule_applies_and_each_hit_is_counted(client, agent_key):
    RedactionRule.objects.create(name="employee-id", pattern=r"EMP-\d{5}", replacement="[EMPLOYEE]")
    redaction.invalidate_cache()
    redaction.flush_hit_counts()  # start from zero pending
    trace = helpers.new_trace_id()
    spans = [helpers.make_span(trace, attrs={"input.value": "EMP-12345 and EMP-54321 asked"}),
             helpers.make_span(trace, attrs={"output.value": "EMP-99999"})]
    assert helpers.post(client, helpers.body_of(*spans), key=agent_key).status_code == 200
    assert "EMP-12345" not in _everything_stored()
    assert sorted(Span.objects.values_list("redaction_count", flat=True)) == [1, 2]
    jobs.flush_redaction_counts(now=None)
    assert RedactionRule.objects.get(name="employee-id").hit_count == 3


def test_disabled_admin_rule_is_not_applied_but_builtins_always_are(client, agent_key):
    RedactionRule.objects.create(name="word", pattern=r"banana", enabled=False)
    RedactionRule.objects.filter(builtin=True).update(enabled=False)
    redaction.invalidate_cache()
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, attrs={"input.value": f"banana {SECRET_EMAIL}"})
    assert helpers.post(client, helpers.body_of(span), key=agent_key).status_code == 200
    assert Span.objects.get().input_text == "banana [REDACTED:email]"


@pytest.mark.timeout(120)  # a hang guard: Python's backtracking engine takes hours on this text
def test_an_admin_rule_that_backtracks_cannot_stall_ingest(client, agent_key):
    # (a|aa)+$ on sixty a's and a b: exponential for ``re``, linear on RE2, which admin rules run on
    RedactionRule.objects.create(name="runs-of-a", pattern=r"(a|aa)+$", replacement="[A]")
    redaction.invalidate_cache()
    trace = helpers.new_trace_id()
    spans = [helpers.make_span(trace, attrs={"input.value": "a" * 60 + "b"}),
             helpers.make_span(trace, attrs={"input.value": "tail aaaa"})]
    assert helpers.post(client, helpers.body_of(*spans), key=agent_key).status_code == 200
    assert sorted(Span.objects.values_list("input_text", flat=True)) == ["a" * 60 + "b", "tail [A]"]


@pytest.mark.parametrize("pattern", [r"(a)\1", r"secret(?=-\d)", r"(?<!x)key"])
def test_a_rule_the_linear_engine_cannot_run_is_refused_naming_the_pattern(pattern):
    from django.core.exceptions import ValidationError

    rule = RedactionRule(name="bad", pattern=pattern, replacement="[X]")
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert "pattern" in refused.value.message_dict
    assert "look-around and back-references" in refused.value.message_dict["pattern"][0]


def test_a_rule_saved_before_the_linear_engine_still_redacts(client, agent_key):
    # look-around is refused on save now, but a rule saved earlier must not silently stop redacting
    RedactionRule.objects.bulk_create([RedactionRule(name="old", pattern=r"token(?=-\d)", replacement="[T]")])
    redaction.invalidate_cache()
    span = helpers.make_span(helpers.new_trace_id(), attrs={"input.value": "token-1 and tokens"})
    assert helpers.post(client, helpers.body_of(span), key=agent_key).status_code == 200
    assert Span.objects.get().input_text == "[T]-1 and tokens"


def test_builtin_rules_exist_as_rows_for_counting():
    assert set(RedactionRule.objects.filter(builtin=True).values_list("name", flat=True)) == {
        "email", "phone", "card-number", "api-key"}


@pytest.mark.parametrize("text", ["Year 2024, order 12345678, 3.14159", "call me at 10:30 on 2024-05-01",
                                  "version 1.2.3.4", "no secrets here"])
def test_ordinary_numbers_survive(text):
    from collections import Counter

    assert redaction.get_redactor().redact_text(text, Counter()) == text


@pytest.mark.parametrize("text", ["order 4111111111111112 shipped", "trace 1234567890123456789 done",
                                  "ids 46038997983165 and 5500000000000005"])
def test_card_length_ids_failing_the_luhn_check_survive(text):
    from collections import Counter

    counts = Counter()
    assert redaction.get_redactor().redact_text(text, counts) == text
    assert counts["card-number"] == 0


@pytest.mark.parametrize("card", ["4111111111111111", "5500-0000-0000-0004", "3782 822463 10005",
                                  "6011 0009 9013 9424", "4222222222222", "4222 2222 2222 2"])
def test_real_card_numbers_are_redacted_in_any_grouping(card):
    from collections import Counter

    counts = Counter()
    redactor = redaction.get_redactor()
    # the span-level check must let it through too (13 digits: the fewest a card number has)
    assert redactor.may_match(f"on 2026-05-12 paid with {card}.\x00order 12345678")
    assert redactor.redact_text(f"paid with {card}.", counts) == "paid with [REDACTED:card]."
    assert counts["card-number"] == 1


# Each at the least its built-in matches. The span-level check runs loose versions of the built-ins on
# RE2 first and stops there when none matches, so it must let every one of these through.
@pytest.mark.parametrize("text", [
    "call 12 345 678 now", "call (41)555-013", "+1 (415) 555-0132",
    "call ٣1-345-6789 now",  # starts with an Arabic-Indic digit (\d to Python's re), just before the ASCII digits
    "key sk-" + "a" * 16, "sk-proj-" + "A" * 16, "aoc_" + "b" * 20, "AKIA" + "A1" * 8, "ghp_" + "c" * 30,
    "xoxb-" + "1" * 10, "AIza" + "d" * 35, "Authorization: Bearer " + "e" * 20,
    "café 4111 1111 1111 1111 ü", "4222222222222", "\ud800 4111 1111 1111 1111"])
def test_every_builtin_match_gets_past_the_span_level_check(text):
    from collections import Counter

    redactor = redaction.get_redactor()
    assert redactor.may_match(f"first string\x00{text}\x00last string")
    assert "[REDACTED:" in redactor.redact_text(text, Counter())


def test_a_number_split_between_two_strings_is_not_one():
    # a span's strings are joined by NUL for the check; no built-in matches across it
    assert not redaction.get_redactor().may_match("paid 4222222\x00222222 ok\x00call 415-555\x00-0132")

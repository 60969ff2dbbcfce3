import pytest

from agents import services
from agents.models import ImmutableVersion, PromptVersion
from console.models import AuditEntry
from tests.agents.test_prompt_fixtures import add_version, make_prompt

pytestmark = pytest.mark.django_db


def test_versions_are_numbered_in_order_with_their_parent():
    prompt = make_prompt()
    v2 = add_version(prompt, "Answer {ticket} briefly.", commit_message="shorter")
    assert [v.number for v in prompt.versions.order_by("number")] == [1, 2]
    assert v2.parent.number == 1
    assert v2.variables == ["ticket"]
    assert AuditEntry.objects.filter(action="prompt.version_created").count() == 2


def test_a_saved_version_cannot_be_changed():
    prompt = make_prompt()
    v1 = prompt.versions.get()
    v1.template = "something else"
    with pytest.raises(ImmutableVersion):
        v1.save()
    assert PromptVersion.objects.get(pk=v1.pk).template == "Answer {ticket} politely."


def test_undeclared_variables_are_refused():
    prompt = make_prompt()
    with pytest.raises(services.InvalidTemplate, match="undeclared variables: customer"):
        add_version(prompt, "Dear {customer}, {ticket}", variables=["ticket"])
    assert prompt.versions.count() == 1


def test_unbalanced_braces_are_refused():
    prompt = make_prompt()
    with pytest.raises(services.InvalidTemplate):
        add_version(prompt, "Answer {ticket")


def test_chat_templates_are_json_messages_with_variables_from_every_message():
    prompt = make_prompt()
    v = add_version(prompt, '[{"role": "system", "content": "You are {persona}."},'
                            ' {"role": "user", "content": "{ticket}"}]', kind="chat")
    assert v.variables == ["persona", "ticket"]
    assert v.messages[0]["role"] == "system"
    with pytest.raises(services.InvalidTemplate, match="JSON"):
        add_version(prompt, "not json", kind="chat")


def test_prompt_names_are_unique():
    make_prompt("x")
    with pytest.raises(services.PromptNameTaken):
        make_prompt("x")


def test_new_version_links_the_feedback_it_answers():
    from tests.agents.test_prompt_fixtures import add_decisions

    prompt = make_prompt()
    v1 = prompt.versions.get()
    rows = add_decisions(v1, reject=3)
    ids = list(v1.feedback.values_list("pk", flat=True))[:2]
    v2 = add_version(prompt, "Better {ticket}", answers_feedback_ids=ids)
    assert set(v2.addressed_feedback.values_list("pk", flat=True)) == set(ids)
    assert len(rows) == 3 and v1.feedback.filter(addressed_by__isnull=True).count() == 1

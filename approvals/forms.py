"""HTML input validation of the approvals UI. Domain rules stay in models/services;
forms only turn text into the values those functions take, and name the field."""

import json
import re

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q

from agents.models import Agent
from approvals.models import (
    CONDITION_OPS,
    BreachAction,
    ConflictRule,
    Outcome,
    Queue,
    ReasonCategory,
    Risk,
    Verdict,
    WebhookFormat,
)
from console import egress
from console.roles import Role


def parse_json_field(form: forms.Form, field: str, text: str, *, want_object: bool):
    """The parsed JSON of ``text``, or None after adding an error naming ``field`` (the input is kept)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        form.add_error(field, f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
        return None
    if want_object and not isinstance(value, dict):
        form.add_error(field, "The arguments must be a JSON object, like {\"amount\": 120}.")
        return None
    return value


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices)
    reason_category = forms.ChoiceField(choices=[("", "— reason —")] + ReasonCategory.choices, required=False,
                                        label="Reason category")
    reason = forms.CharField(required=False, max_length=2000, label="Reason",
                             widget=forms.Textarea(attrs={"rows": 2}))
    arguments = forms.CharField(required=False, strip=False, label="Arguments (edit, then Approve with edits)",
                                widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}))

    def clean(self):
        data = super().clean()
        verdict = data.get("verdict")
        data["edited_arguments"] = None
        if verdict == Verdict.MODIFY:
            text = (data.get("arguments") or "").strip()
            if not text:
                self.add_error("arguments", "Give the edited arguments as a JSON object.")
            else:
                data["edited_arguments"] = parse_json_field(self, "arguments", text, want_object=True)
        if verdict == Verdict.REJECT and not data.get("reason_category"):
            self.add_error("reason_category", "Say why you reject: choose a reason category.")
        return data


# --- escalation matrix -------------------------------------------------------------------------

LEVEL_KEY = re.compile(r"^level-(\d+)-after_minutes$")


def active_users():
    return get_user_model().objects.filter(is_active=True).order_by("username")


def reviewing_users():
    """Active users who can decide a queue's requests: Reviewers, Admins and superusers (see may_decide)."""
    can_review = Q(is_superuser=True) | Q(groups__name__in=[Role.REVIEWER, Role.ADMIN])
    return active_users().filter(pk__in=get_user_model().objects.filter(can_review).values("pk"))


class MatrixForm(forms.Form):
    breach_action = forms.ChoiceField(choices=BreachAction.choices, label="At SLA breach")


class LevelForm(forms.Form):
    after_minutes = forms.IntegerField(min_value=0, label="Minutes without claim or decision")
    repeat_count = forms.IntegerField(min_value=0, max_value=50, initial=0, label="Repeat (extra times)")
    repeat_interval_minutes = forms.IntegerField(min_value=1, initial=10, label="Every (minutes)")
    users = forms.ModelMultipleChoiceField(queryset=active_users(), required=False,
                                           widget=forms.SelectMultiple(attrs={"size": 4}))
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                            widget=forms.SelectMultiple(attrs={"size": 4}))
    queue_reviewers = forms.BooleanField(required=False, label="The queue's reviewers")
    email = forms.BooleanField(required=False, initial=True, label="Also e-mail users")
    webhook_url = forms.URLField(required=False, max_length=500, label="On-call webhook URL", assume_scheme="https")
    webhook_format = forms.ChoiceField(choices=WebhookFormat.choices, initial=WebhookFormat.GENERIC,
                                       label="Webhook format")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["users"].queryset = active_users()

    def clean_webhook_url(self):
        url = self.cleaned_data["webhook_url"]
        egress.validate_on_save(url)  # internal addresses are refused (SSRF); sending checks again
        return url

    def spec(self) -> dict:
        """The level as ``services.update_matrix`` takes it (after is_valid)."""
        d = self.cleaned_data
        return {
            "after_minutes": d["after_minutes"], "repeat_count": d["repeat_count"] or 0,
            "repeat_interval_minutes": d["repeat_interval_minutes"] or 10,
            "user_ids": sorted(u.pk for u in d["users"]), "group_ids": sorted(g.pk for g in d["groups"]),
            "queue_reviewers": d["queue_reviewers"], "email": d["email"],
            "webhook_url": d["webhook_url"], "webhook_format": d["webhook_format"] or WebhookFormat.GENERIC,
        }


def level_initial(level) -> dict:
    return {
        "after_minutes": level.after_minutes, "repeat_count": level.repeat_count,
        "repeat_interval_minutes": level.repeat_interval_minutes,
        "users": [u.pk for u in level.users.all()], "groups": [g.pk for g in level.groups.all()],
        "queue_reviewers": level.notify_queue_reviewers, "email": level.email,
        "webhook_url": level.webhook_url, "webhook_format": level.webhook_format,
    }


def level_indexes(data) -> list[int]:
    return sorted({int(m.group(1)) for key in data if (m := LEVEL_KEY.match(key))})


def unbound_copy(form: forms.Form, prefix: str) -> forms.Form:
    """The same input as a fresh, unvalidated form (add/remove re-renders without error noise)."""
    initial = {name: form[name].value() for name in form.fields}
    return type(form)(prefix=prefix, initial=initial)


# --- queues --------------------------------------------------------------------------------------


class QueueCreateForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="letters, digits, - and _")
    description = forms.CharField(max_length=500, required=False)


class QueueSettingsForm(forms.Form):
    description = forms.CharField(max_length=500, required=False)
    members = forms.ModelMultipleChoiceField(queryset=reviewing_users(), required=False,
                                             widget=forms.SelectMultiple(attrs={"size": 8}),
                                             help_text="Reviewers who decide this queue's requests")
    sla_critical = forms.IntegerField(min_value=1, label="SLA critical (minutes)")
    sla_high = forms.IntegerField(min_value=1, label="SLA high (minutes)")
    sla_medium = forms.IntegerField(min_value=1, label="SLA medium (minutes)")
    sla_low = forms.IntegerField(min_value=1, label="SLA low (minutes)")
    two_critical = forms.BooleanField(required=False, label="Critical needs two reviewers")
    two_high = forms.BooleanField(required=False, label="High needs two reviewers")
    two_medium = forms.BooleanField(required=False, label="Medium needs two reviewers")
    two_low = forms.BooleanField(required=False, label="Low needs two reviewers",
                                 help_text="Four eyes: such a request stays pending until two different reviewers "
                                           "approve it; one reject ends it")
    conflict_rule = forms.ChoiceField(
        choices=ConflictRule.choices, initial=ConflictRule.ASK_HUMAN, required=False,
        label="When two actions hit one resource",
        help_text="A request whose resource already has a pending or running action: ask a human (held until a "
                  "reviewer arbitrates), first wins (rejected at once, naming the first), or higher risk waits "
                  "(the lower-risk one goes first)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].queryset = reviewing_users()


# --- guardian rules ------------------------------------------------------------------------------

COND_KEY = re.compile(r"^cond-(\d+)-field$")


class RuleForm(forms.Form):
    name = forms.SlugField(max_length=100)
    description = forms.CharField(max_length=500, required=False)
    order = forms.IntegerField(initial=100, help_text="lower runs first")
    enabled = forms.BooleanField(required=False, initial=True)
    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"), required=False, empty_label="any agent")
    action_pattern = forms.CharField(max_length=200, initial="*", help_text="glob, e.g. refunds.* or deploy")
    risks = forms.MultipleChoiceField(choices=Risk.choices, required=False, widget=forms.CheckboxSelectMultiple,
                                      help_text="none ticked: any risk")
    outcome = forms.ChoiceField(choices=Outcome.choices)
    queue = forms.ModelChoiceField(queryset=Queue.objects.order_by("name"), required=False,
                                   empty_label="— (only for ask) —")
    required_approvals = forms.TypedChoiceField(choices=[(1, "1"), (2, "2")], coerce=int, initial=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.order_by("name")
        self.fields["queue"].queryset = Queue.objects.order_by("name")


class ConditionForm(forms.Form):
    field = forms.CharField(max_length=200, required=False, label="Argument",
                            widget=forms.TextInput(attrs={"placeholder": "amount"}))
    op = forms.ChoiceField(choices=[(op, op) for op in CONDITION_OPS], label="Operator")
    value = forms.CharField(max_length=2000, required=False, strip=False, label="Value",
                            help_text="JSON: 500, \"prod\", [\"a\", \"b\"]; plain text is a string",
                            widget=forms.TextInput(attrs={"placeholder": "500"}))

    def condition(self) -> dict | None:
        """{field, op, value} or None for an empty row; value is JSON when it parses, else the text."""
        d = self.cleaned_data
        if not d.get("field"):
            return None
        text = d.get("value") or ""
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        return {"field": d["field"], "op": d["op"], "value": value}


def condition_initial(cond: dict) -> dict:
    value = cond.get("value")
    return {"field": cond.get("field", ""), "op": cond.get("op", "=="),
            "value": value if isinstance(value, str) and not _looks_like_json(value) else json.dumps(value)}


def _looks_like_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def condition_indexes(data) -> list[int]:
    return sorted({int(m.group(1)) for key in data if (m := COND_KEY.match(key))})


# --- conflicts -----------------------------------------------------------------------------------


class ArbitrationForm(forms.Form):
    choice = forms.ChoiceField(choices=[("this_first", "Let this one go first"),
                                        ("other_first", "Let the other go first"),
                                        ("reject", "Reject this one")], label="Arbitration")
    reason = forms.CharField(max_length=500, label="Reason", widget=forms.Textarea(attrs={"rows": 2}),
                             error_messages={"required": "Say why: the reason is kept in the audit log."})

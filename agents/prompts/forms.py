import json

from django import forms

from agents.models import LabelName, PromptKind
from console import egress


class VersionFields(forms.Form):
    kind = forms.ChoiceField(choices=PromptKind.choices, initial=PromptKind.TEXT)
    template = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), max_length=100_000,
                               help_text="Use {name} for variables; for chat, a JSON list of {role, content}.")
    variables = forms.CharField(required=False, max_length=2000,
                                help_text="comma-separated; empty: taken from the template")
    model = forms.CharField(required=False, max_length=200)
    parameters = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000,
                                 help_text='JSON object, e.g. {"temperature": 0.2}')
    commit_message = forms.CharField(max_length=500, help_text="what changed and why")

    def clean_variables(self):
        raw = self.cleaned_data["variables"].strip()
        if not raw:
            return None
        names = [v.strip() for v in raw.split(",") if v.strip()]
        bad = [n for n in names if not n.isidentifier()]
        if bad:
            raise forms.ValidationError("Not variable names: " + ", ".join(bad))
        return names

    def clean_parameters(self):
        raw = self.cleaned_data["parameters"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Parameters must be a JSON object.")
        return value


class PromptCreateForm(VersionFields):
    name = forms.SlugField(max_length=200, help_text="letters, digits, - and _")
    description = forms.CharField(required=False, max_length=500)
    field_order = ["name", "description", "kind", "template", "variables", "model", "parameters",
                   "commit_message"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["commit_message"].initial = "first version"


class RefineForm(VersionFields):
    answers = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=())
    to_canary = forms.BooleanField(required=False, initial=True, label="Put it on canary")
    canary_share = forms.IntegerField(min_value=1, max_value=100, initial=10, required=False,
                                      label="Canary share (%)")

    def __init__(self, *args, feedback_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["answers"].choices = [(pk, pk) for pk in feedback_ids]


class LabelMoveForm(forms.Form):
    label = forms.ChoiceField(choices=LabelName.choices)
    version = forms.IntegerField(min_value=1)
    share = forms.IntegerField(min_value=0, max_value=100, required=False, help_text="canary only")
    reason = forms.CharField(required=False, max_length=500)


class WebhookForm(forms.Form):
    url = forms.URLField(max_length=500, assume_scheme="https")
    secret = forms.CharField(max_length=200, min_length=16, help_text="at least 16 characters")

    def clean_url(self):
        url = self.cleaned_data["url"]
        egress.validate_on_save(url)  # internal addresses are refused (SSRF); sending checks again
        return url


class RatingForm(forms.Form):
    trace_id = forms.CharField(max_length=32)
    span_id = forms.CharField(max_length=16, required=False)
    thumb = forms.ChoiceField(choices=[("up", "👍"), ("down", "👎")])
    comment = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))
    next = forms.CharField(required=False, max_length=500)

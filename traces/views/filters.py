"""The runs list's filters: one GET form, applied as plain QuerySet filters."""

from datetime import timedelta

from django import forms
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from agents.models import Agent
from traces.models import RunStatus, Span

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class RunFilterForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"), required=False, to_field_name="name",
                                   empty_label="any agent")
    status = forms.ChoiceField(choices=[("", "any status"), *RunStatus.choices], required=False)
    range = forms.ChoiceField(choices=[("", "any time"), ("1h", "last hour"), ("24h", "last 24 h"),
                                       ("7d", "last 7 days"), ("30d", "last 30 days")], required=False,
                              label="Started")
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                label="from")
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                label="to")
    min_cost = forms.DecimalField(required=False, min_value=0, max_digits=16, decimal_places=6, label="cost ≥ $",
                                  widget=forms.NumberInput(attrs={"step": "any", "class": "num"}))
    min_duration_ms = forms.IntegerField(required=False, min_value=0, label="latency ≥ ms",
                                         widget=forms.NumberInput(attrs={"class": "num"}))
    has_error = forms.BooleanField(required=False, label="has errors")
    has_pending_approval = forms.BooleanField(required=False, label="waiting for approval")
    prompt_version = forms.CharField(required=False, max_length=260, label="prompt version",
                                     help_text="name@version or version",
                                     widget=forms.TextInput(attrs={"placeholder": "refund-agent@3"}))
    q = forms.CharField(required=False, max_length=200, label="text in spans",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "search span content"}))

    def is_filtering(self) -> bool:
        """Any filter asked for, valid or not: a page with a refused filter is not the unfiltered list."""
        if not self.is_bound:
            return False
        self.is_valid()
        return bool(self.rejected_labels()) or bool(self.applied_labels())

    def rejected_labels(self) -> list[str]:
        """Labels of the filters that were refused and are therefore not applied."""
        if not self.is_bound:
            return []
        return [str(self[name].label) for name in self.fields if name in self.errors]

    def applied_labels(self) -> list[str]:
        """Labels of the valid filters that narrow the list."""
        if not self.is_bound:
            return []
        self.is_valid()
        return [str(self[name].label) for name, value in self.cleaned_data.items()
                if name not in self.errors and value not in (None, "", False)]

    def apply(self, runs, *, now=None):
        """``runs`` narrowed by the valid filters (invalid fields are shown beside the field and ignored)."""
        self.is_valid()
        data = {k: v for k, v in getattr(self, "cleaned_data", {}).items() if k not in self.errors}
        now = now or timezone.now()
        if data.get("agent"):
            runs = runs.filter(agent=data["agent"])
        if data.get("status"):
            runs = runs.filter(status=data["status"])
        if data.get("range") in RANGES:
            runs = runs.filter(started_at__gte=now - RANGES[data["range"]])
        if data.get("since"):
            runs = runs.filter(started_at__gte=data["since"])
        if data.get("until"):
            runs = runs.filter(started_at__lt=data["until"])
        if data.get("min_cost") is not None:
            runs = runs.filter(cost__gte=data["min_cost"])
        if data.get("min_duration_ms") is not None:
            runs = runs.filter(duration_ms__gte=data["min_duration_ms"])
        if data.get("has_error"):
            runs = runs.filter(error_count__gt=0)
        if data.get("has_pending_approval"):
            runs = runs.filter(has_pending_approval=True)
        if data.get("prompt_version"):
            name, at, version = data["prompt_version"].rpartition("@")
            runs = runs.filter(prompt_name=name, prompt_version=version) if at else runs.filter(prompt_version=version)
        if data.get("q"):
            q = data["q"]
            matching = Span.objects.filter(run_id=OuterRef("pk")).filter(
                Q(name__icontains=q) | Q(input_text__icontains=q) | Q(output_text__icontains=q)
                | Q(tool_name__icontains=q) | Q(status_message__icontains=q))
            runs = runs.filter(Q(name__icontains=q) | Q(task__icontains=q) | Exists(matching))
        return runs

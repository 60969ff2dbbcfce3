from django import forms

from agents.models import Agent


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ["name", "description"]


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="what the key is for, e.g. 'prod worker'")


class PauseForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)

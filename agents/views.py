from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents import services
from agents.forms import AgentForm, KeyForm, PauseForm
from agents.models import Agent, AgentKey
from console.roles import STAFF_ROLES, Role, role_required


@role_required(*STAFF_ROLES)
def agent_list(request):
    agents = Agent.objects.order_by("name")
    return render(request, "agents/agent_list.html", {"agents": agents, "form": AgentForm()})


@role_required(Role.ADMIN)
def agent_create(request):
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            agent = services.create_agent(actor=request.user, **form.cleaned_data)
        except services.AgentNameTaken as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Agent {agent.name} created. Issue it a key below.")
            return redirect("agents:detail", pk=agent.pk)
    return render(request, "agents/agent_form.html", {"form": form}, status=400 if form.errors else 200)


@role_required(*STAFF_ROLES)
def agent_detail(request, pk):
    return _render_detail(request, get_object_or_404(Agent, pk=pk))


def _render_detail(request, agent, new_key=None):
    keys = AgentKey.objects.filter(agent=agent).order_by("-created_at")
    return render(request, "agents/agent_detail.html", {
        "agent": agent, "keys": keys, "key_form": KeyForm(), "pause_form": PauseForm(),
        "new_key": new_key,
    })


@require_POST
@role_required(Role.OPERATOR)
def agent_pause(request, pk):
    form = PauseForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    agent = services.pause_agent(agent_id=get_object_or_404(Agent, pk=pk).pk, actor=request.user, reason=reason)
    return _agent_status(request, agent)


@require_POST
@role_required(Role.OPERATOR)
def agent_resume(request, pk):
    agent = services.resume_agent(agent_id=get_object_or_404(Agent, pk=pk).pk, actor=request.user)
    return _agent_status(request, agent)


def _agent_status(request, agent):
    if request.htmx:
        return render(request, "agents/partials/agent_status.html", {"agent": agent, "pause_form": PauseForm()})
    return redirect("agents:detail", pk=agent.pk)


@require_POST
@role_required(Role.ADMIN)
def key_issue(request, pk):
    agent = get_object_or_404(Agent, pk=pk)
    form = KeyForm(request.POST)
    name = form.cleaned_data["name"] if form.is_valid() else ""
    key, plain = services.issue_key(agent=agent, actor=request.user, name=name)
    # Shown once, in this response only; never stored in plain text anywhere.
    response = _render_detail(request, agent, new_key={"id": key.pk, "plain": plain})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(Role.ADMIN)
def key_revoke(request, key_id):
    key = get_object_or_404(AgentKey, pk=key_id)
    services.revoke_key(key_id=key.pk, actor=request.user)
    messages.success(request, f"Key {key.prefix}… revoked; it no longer works.")
    return redirect("agents:detail", pk=key.agent_id)

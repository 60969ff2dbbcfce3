"""Prompt pages: list, prompt (versions, labels, canary), version (scorecard, feedback), diff, refine."""

import json

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from agents import services
from agents.models import (
    CanaryVerdict,
    Feedback,
    FeedbackVerdict,
    LabelMove,
    LabelName,
    Prompt,
    PromptVersion,
    PromptWebhook,
    WebhookDelivery,
)
from agents.prompts import diff as word_diff
from agents.prompts import refine as refine_data
from agents.prompts import scorecard
from agents.prompts.forms import LabelMoveForm, PromptCreateForm, RatingForm, RefineForm, WebhookForm
from agents.prompts.labels import rollback_target
from agents.prompts.versions import get_version
from console import audit
from console.roles import STAFF_ROLES, Role, role_required


def _prompt(name) -> Prompt:
    return get_object_or_404(Prompt, name=name)


def _version(prompt, number) -> PromptVersion:
    return get_object_or_404(PromptVersion.objects.select_related("prompt", "parent", "author"),
                             prompt=prompt, number=number)


@role_required(*STAFF_ROLES)
def prompt_list(request):
    prompts = Prompt.objects.prefetch_related("labels__version").order_by("name")
    latest = {}
    for verdict in CanaryVerdict.objects.filter(resolved_at__isnull=True).select_related("version") \
            .order_by("created_at", "id"):
        latest[verdict.prompt_id] = verdict
    rows = [{"prompt": p, "labels": {lab.name: lab for lab in p.labels.all()}, "verdict": latest.get(p.pk)}
            for p in prompts]
    return render(request, "agents/prompts/prompt_list.html", {"rows": rows, "form": PromptCreateForm()})


@role_required(Role.ADMIN)
def prompt_create(request):
    form = PromptCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            prompt = services.create_prompt(
                name=data["name"], description=data["description"], actor=request.user, template=data["template"],
                kind=data["kind"], variables=data["variables"], model=data["model"],
                parameters=data["parameters"], commit_message=data["commit_message"], owners=[request.user])
        except services.PromptNameTaken as exc:
            form.add_error("name", str(exc))
        except services.InvalidTemplate as exc:
            form.add_error("template", str(exc))
        else:
            messages.success(request, f"Prompt {prompt.name} created with version 1. Point production at it below.")
            return redirect("prompts:detail", name=prompt.name)
    return render(request, "agents/prompts/prompt_form.html", {"form": form}, status=400 if form.errors else 200)


@role_required(*STAFF_ROLES)
def prompt_detail(request, name):
    prompt = _prompt(name)
    versions = list(prompt.versions.select_related("author", "parent").order_by("-number"))
    labels = {lab.name: lab for lab in prompt.labels.select_related("version")}
    label_rows = [{"name": name, "lab": labels[name], "rollback_to": rollback_target(prompt, name)}
                  for name in LabelName.values if name in labels]
    verdicts = CanaryVerdict.objects.filter(prompt=prompt).select_related("version", "baseline")[:20]
    suggestion = next((v for v in verdicts if v.outcome == "promote" and v.resolved_at is None
                       and labels.get(LabelName.CANARY) and labels[LabelName.CANARY].version_id == v.version_id),
                      None)
    return render(request, "agents/prompts/prompt_detail.html", {
        "prompt": prompt, "versions": versions, "labels": labels, "label_names": LabelName.values,
        "label_rows": label_rows, "verdicts": verdicts, "suggestion": suggestion,
        "moves": LabelMove.objects.filter(prompt=prompt).select_related("from_version", "to_version")[:30],
        "webhooks": PromptWebhook.objects.filter(prompt=prompt),
        "deliveries": WebhookDelivery.objects.filter(move__prompt=prompt).select_related("webhook")[:10],
        "move_form": LabelMoveForm(), "webhook_form": WebhookForm(),
    })


@role_required(*STAFF_ROLES)
def version_detail(request, name, number):
    prompt = _prompt(name)
    version = _version(prompt, number)
    compare_to = version.parent
    if request.GET.get("compare"):
        compare_to = get_version(prompt, request.GET["compare"]) or compare_to
    card = scorecard.build_scorecard(version)
    other = scorecard.build_scorecard(compare_to) if compare_to and compare_to.pk != version.pk else None
    comparisons = scorecard.compare(card, other) if other else []
    category = request.GET.get("category", "")
    feedback = Feedback.objects.filter(version=version).select_related("author", "addressed_by")
    if category:
        feedback = feedback.filter(category=category) if category != "ratings" else feedback.ratings()
    categories = sorted(set(Feedback.objects.filter(version=version).exclude(category="")
                            .values_list("category", flat=True)))
    return render(request, "agents/prompts/version_detail.html", {
        "prompt": prompt, "version": version, "card": card, "other": other, "comparisons": comparisons,
        "compare_to": compare_to, "all_versions": prompt.versions.order_by("-number"),
        "feedback": feedback[:200], "category": category, "categories": categories,
        "labels": [lab.name for lab in prompt.labels.filter(version=version)],
        "answers": version.addressed_feedback.count(), "runs": scorecard.recent_runs(version),
    })


@role_required(*STAFF_ROLES)
def version_diff(request, name):
    prompt = _prompt(name)
    versions = list(prompt.versions.order_by("-number"))
    if not versions:
        raise Http404("This prompt has no versions.")
    new = get_version(prompt, request.GET.get("b", "")) or versions[0]
    old = get_version(prompt, request.GET.get("a", "")) or new.parent or versions[-1]
    pieces = word_diff.word_diff(old.template, new.template)
    return render(request, "agents/prompts/diff.html", {
        "prompt": prompt, "old": old, "new": new, "pieces": pieces, "stats": word_diff.diff_stats(pieces),
        "versions": versions,
        "meta_changes": [(label, getattr(old, attr), getattr(new, attr))
                         for label, attr in (("model", "model"), ("parameters", "parameters"),
                                             ("variables", "variables"), ("kind", "kind"))
                         if getattr(old, attr) != getattr(new, attr)],
    })


@role_required(Role.ADMIN)
def refine(request, name, number):
    prompt = _prompt(name)
    version = _version(prompt, number)
    data = refine_data.grouped(version)
    ids = [row.pk for row in data["rows"]]
    initial = {"kind": version.kind, "template": version.template, "model": version.model,
               "variables": ", ".join(version.variables), "answers": ids, "to_canary": True, "canary_share": 10,
               "parameters": _json(version.parameters)}
    form = RefineForm(request.POST or None, initial=initial, feedback_ids=ids)
    if request.method == "POST" and form.is_valid():
        cd = form.cleaned_data
        try:
            with transaction.atomic():
                new = services.create_version(
                    prompt=prompt, author=request.user, template=cd["template"], kind=cd["kind"],
                    variables=cd["variables"], model=cd["model"], parameters=cd["parameters"],
                    commit_message=cd["commit_message"], parent=version, answers_feedback_ids=cd["answers"])
                if cd["to_canary"]:
                    services.move_label(prompt=prompt, label=LabelName.CANARY, version=new, actor=request.user,
                                        share=cd["canary_share"] or 10, reason=f"refined from v{version.number}")
        except services.InvalidTemplate as exc:
            form.add_error("template", str(exc))
        else:
            note = f" and put on canary at {cd['canary_share'] or 10}%" if cd["to_canary"] else ""
            messages.success(request, f"Saved {prompt.name} v{new.number}{note}; it answers "
                                      f"{len(cd['answers'])} feedback items.")
            return redirect("prompts:version", name=prompt.name, number=new.number)
    return render(request, "agents/prompts/refine.html", {
        "prompt": prompt, "version": version, "form": form, "data": data,
        "checked": {int(x) for x in request.POST.getlist("answers") if x.isascii() and x.isdigit()} if form.is_bound else set(ids),
    }, status=400 if form.errors else 200)


def _json(value) -> str:
    return json.dumps(value, indent=2) if value else ""


@require_POST
@role_required(Role.ADMIN)
def label_move(request, name):
    prompt = _prompt(name)
    form = LabelMoveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a label and a version: " + form.errors.as_text())
        return redirect("prompts:detail", name=prompt.name)
    cd = form.cleaned_data
    version = get_version(prompt, cd["version"])
    if version is None:
        messages.error(request, f"{prompt.name} has no version {cd['version']}.")
        return redirect("prompts:detail", name=prompt.name)
    try:
        if cd["label"] == LabelName.CANARY and cd["share"] == 0:
            services.remove_label(prompt=prompt, label=cd["label"], actor=request.user, reason=cd["reason"])
        else:
            services.move_label(prompt=prompt, label=cd["label"], version=version, actor=request.user,
                                share=cd["share"], reason=cd["reason"])
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{cd['label']} now points at v{version.number}.")
    return redirect("prompts:detail", name=prompt.name)


@require_POST
@role_required(Role.ADMIN)
def label_rollback(request, name, label):
    prompt = _prompt(name)
    if label not in LabelName.values:
        raise Http404("No such label.")
    try:
        move = services.rollback_label(prompt=prompt, label=label, actor=request.user,
                                       reason=request.POST.get("reason", "")[:500])
    except services.NothingToRollBack as exc:
        messages.error(request, str(exc))
    else:
        target = f"v{move.to_version.number}" if move and move.to_version_id else "removed"
        messages.success(request, f"Rolled {label} back: {target}.")
    return redirect("prompts:detail", name=prompt.name)


@require_POST
@role_required(Role.ADMIN)
def promote(request, name):
    prompt = _prompt(name)
    try:
        move = services.promote_canary(prompt=prompt, actor=request.user)
    except services.NothingToRollBack as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Promoted: production now points at v{move.to_version.number}.")
    return redirect("prompts:detail", name=prompt.name)


@require_POST
@role_required(Role.ADMIN)
def webhook_add(request, name):
    prompt = _prompt(name)
    form = WebhookForm(request.POST)
    if form.is_valid():
        PromptWebhook.objects.create(prompt=prompt, **form.cleaned_data)
        audit.record(actor=request.user, action="prompt.webhook_added", target=prompt,
                     after={"url": form.cleaned_data["url"]})
        messages.success(request, "Subscriber added: it is told (signed) about every label move.")
    else:
        errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        messages.error(request, "Webhook not added: " + errors)
    return redirect("prompts:detail", name=prompt.name)


@require_POST
@role_required(*STAFF_ROLES)
def rate(request):
    """Thumbs up/down with a comment on a run or span (form posted from the trace page)."""
    form = RatingForm(request.POST)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = ""
    status = 200
    if form.is_valid():
        cd = form.cleaned_data
        try:
            feedback = services.record_rating(user=request.user, trace_id=cd["trace_id"], span_id=cd["span_id"],
                                              thumb=cd["thumb"], comment=cd["comment"])
            # words, as on the buttons: without an emoji font a thumb is an empty box
            result = f"Thanks: rated {feedback.version} as {'Good' if cd['thumb'] == FeedbackVerdict.UP else 'Bad'}."
        except services.NoPromptVersion as exc:
            result, status = str(exc), 400
    else:
        result, status = "Rating not saved: " + form.errors.as_text(), 400
    if request.htmx:
        return render(request, "agents/prompts/partials/rating_result.html", {"result": result}, status=status)
    (messages.success if status == 200 else messages.error)(request, result)
    return redirect(back or "prompts:list")

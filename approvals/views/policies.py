"""Admin editors: queues (members, SLAs), escalation matrices, guardian rules. Every save goes
through a service that validates and audits it; these views only parse input and show errors
beside the field they concern."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from approvals import services
from approvals.services import conflicts
from approvals.forms import (
    ConditionForm,
    LevelForm,
    MatrixForm,
    QueueCreateForm,
    QueueSettingsForm,
    RuleForm,
    condition_indexes,
    condition_initial,
    level_indexes,
    level_initial,
    unbound_copy,
)
from approvals.models import (
    DEFAULT_SLA_MINUTES,
    BreachAction,
    EscalationMatrix,
    GuardianRule,
    Queue,
    Risk,
    SlaPolicy,
    validate_conditions,
)
from console.roles import Role, role_required


def _messages_of(exc: ValidationError) -> list[str]:
    return list(exc.messages)


@role_required(Role.ADMIN)
def policies_index(request):
    return render(request, "approvals/policies/index.html", {
        "queues": Queue.objects.order_by("name"),
        "rule_count": GuardianRule.objects.count(),
    })


# --- queues --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def queue_list(request):
    form = QueueCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            queue = services.create_queue(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Queue {queue.name} created.")
            return redirect("approvals:queue_edit", pk=queue.pk)
    queues = Queue.objects.order_by("name").prefetch_related("members")
    return render(request, "approvals/policies/queues.html", {"queues": queues, "form": form},
                  status=400 if form.errors else 200)


def _sla_minutes(queue) -> dict:
    found = dict(SlaPolicy.objects.filter(queue=queue).values_list("risk", "minutes"))
    return {risk: found.get(risk, DEFAULT_SLA_MINUTES[Risk(risk)]) for risk in Risk.values}


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def queue_edit(request, pk):
    queue = get_object_or_404(Queue, pk=pk)
    sla = _sla_minutes(queue)
    required = dict(SlaPolicy.objects.filter(queue=queue).values_list("risk", "required_approvals"))
    initial = {"description": queue.description, "members": list(queue.members.values_list("pk", flat=True)),
               "conflict_rule": queue.conflict_rule, **{f"sla_{risk}": minutes for risk, minutes in sla.items()},
               **{f"two_{risk}": required.get(risk, 1) == 2 for risk in Risk.values}}
    form = QueueSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["description"] != queue.description:
                services.update_queue(queue_id=queue.pk, description=data["description"], actor=request.user)
            members = sorted(u.pk for u in data["members"])
            if members != sorted(initial["members"]):
                services.set_queue_members(queue_id=queue.pk, user_ids=members, actor=request.user)
            explicit = set(required)
            for risk in Risk.values:
                minutes = data[f"sla_{risk}"]
                approvals = 2 if data[f"two_{risk}"] else 1
                changed = minutes != sla[risk] or approvals != required.get(risk, 1)
                if changed or (risk not in explicit and minutes != DEFAULT_SLA_MINUTES[Risk(risk)]):
                    services.set_sla_policy(queue_id=queue.pk, risk=risk, minutes=minutes, actor=request.user,
                                            required_approvals=approvals)
            if data["conflict_rule"] and data["conflict_rule"] != queue.conflict_rule:  # empty: unchanged
                conflicts.set_conflict_rule(queue_id=queue.pk, rule=data["conflict_rule"], actor=request.user)
        except ValidationError as exc:
            form.add_error(None, _messages_of(exc))
        else:
            messages.success(request, f"Queue {queue.name} saved.")
            return redirect("approvals:queue_edit", pk=queue.pk)
    return render(request, "approvals/policies/queue_edit.html", {"queue": queue, "form": form},
                  status=400 if form.errors else 200)


# --- escalation matrix ----------------------------------------------------------------------------


def _matrix_forms_from_db(queue):
    matrix = EscalationMatrix.objects.filter(queue=queue).first()
    breach = matrix.breach_action if matrix else BreachAction.KEEP_PENDING_AND_PAGE
    levels = list(matrix.levels.order_by("order", "id").prefetch_related("users", "groups")) if matrix else []
    level_forms = [LevelForm(prefix=f"level-{i}", initial=level_initial(lv)) for i, lv in enumerate(levels)]
    return MatrixForm(initial={"breach_action": breach}), level_forms, matrix


def _place_level_error(form: LevelForm, message: str) -> None:
    if "fires after" in message or "after_minutes" in message:
        form.add_error("after_minutes", message)
    elif "repeat interval" in message:
        form.add_error("repeat_interval_minutes", message)
    else:
        form.add_error(None, message)  # recipients: shown at the top of the level, beside its recipient fields


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def matrix_edit(request, pk):
    """GET shows the matrix; POST with op=add/remove-N re-renders the input, op=save validates and saves."""
    queue = get_object_or_404(Queue, pk=pk)
    if request.method == "GET":
        matrix_form, level_forms, matrix = _matrix_forms_from_db(queue)
        return _matrix_page(request, queue, matrix_form, level_forms, matrix)
    op = request.POST.get("op", "save")
    indexes = level_indexes(request.POST)
    matrix_form = MatrixForm(request.POST)
    level_forms = [LevelForm(request.POST, prefix=f"level-{i}") for i in indexes]
    matrix = EscalationMatrix.objects.filter(queue=queue).first()
    if op == "add" or op.startswith("remove-"):
        kept = [(i, f) for i, f in zip(indexes, level_forms, strict=True) if op != f"remove-{i}"]
        level_forms = [unbound_copy(f, f"level-{i}") for i, f in kept]
        if op == "add":
            nxt = (max(indexes) + 1) if indexes else 0
            last_after = _int(kept[-1][1]["after_minutes"].value()) if kept else None
            initial = {"after_minutes": (last_after + 15) if last_after is not None else 0,
                       "repeat_count": 0, "repeat_interval_minutes": 10, "email": True}
            level_forms.append(LevelForm(prefix=f"level-{nxt}", initial=initial))
        matrix_form = MatrixForm(initial={"breach_action": request.POST.get("breach_action")})
        return _matrix_page(request, queue, matrix_form, level_forms, matrix)
    valid = matrix_form.is_valid() & all([f.is_valid() for f in level_forms])
    if valid:
        specs = [f.spec() for f in level_forms]
        located = _locate_level_error(specs)
        if located is not None:
            number, message = located
            _place_level_error(level_forms[number - 1], message)
        elif not specs:
            matrix_form.add_error(None, "A matrix needs at least one level.")
        else:
            try:
                services.update_matrix(queue_id=queue.pk, breach_action=matrix_form.cleaned_data["breach_action"],
                                       levels=specs, actor=request.user)
            except ValidationError as exc:
                matrix_form.add_error(None, _messages_of(exc))
            else:
                messages.success(request, f"Escalation matrix of {queue.name} saved. Pending requests keep the "
                                          "matrix they were created under until you re-apply it.")
                if request.htmx:
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = request.path
                    return response
                return redirect("approvals:matrix", pk=queue.pk)
    return _matrix_page(request, queue, matrix_form, level_forms, matrix, status=400)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _locate_level_error(specs: list[dict]):
    """(level number, message) of the first level the core's validation refuses, else None."""
    for number in range(1, len(specs) + 1):
        try:
            services.validate_levels(specs[:number])
        except ValidationError as exc:
            return number, " ".join(exc.messages)
    return None


def _matrix_page(request, queue, matrix_form, level_forms, matrix, *, status=200):
    context = {"queue": queue, "form": matrix_form, "level_forms": level_forms, "matrix": matrix,
               "pending_count": queue.requests.filter(status="pending").count()}
    if request.htmx:
        return render(request, "approvals/partials/matrix_form.html", context, status=status)
    return render(request, "approvals/policies/matrix.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def matrix_reapply(request, pk):
    queue = get_object_or_404(Queue, pk=pk)
    count = services.reapply_matrix(queue_id=queue.pk, actor=request.user, now=timezone.now())
    messages.success(request, f"Re-applied the current matrix to {count} pending request(s) of {queue.name}.")
    return redirect("approvals:matrix", pk=queue.pk)


# --- guardian rules -------------------------------------------------------------------------------


@role_required(Role.ADMIN)
def rule_list(request):
    rules = GuardianRule.objects.select_related("agent", "queue").order_by("order", "id")
    return render(request, "approvals/policies/rules.html", {"rules": rules})


def _rule_initial(rule: GuardianRule) -> dict:
    return {"name": rule.name, "description": rule.description, "order": rule.order, "enabled": rule.enabled,
            "agent": rule.agent_id, "action_pattern": rule.action_pattern, "risks": rule.risks or [],
            "outcome": rule.outcome, "queue": rule.queue_id, "required_approvals": rule.required_approvals}


def _apply(rule: GuardianRule, data: dict, conditions: list[dict]) -> GuardianRule:
    for field in ("name", "description", "order", "enabled", "agent", "action_pattern", "outcome", "queue",
                  "required_approvals"):
        setattr(rule, field, data[field])
    rule.risks = list(data["risks"]) or None
    rule.conditions = conditions
    return rule


def _locate_condition_error(conditions: list[dict]):
    for number in range(1, len(conditions) + 1):
        try:
            validate_conditions(conditions[:number])
        except ValidationError as exc:
            return number, " ".join(exc.messages)
    return None


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def rule_edit(request, pk=None):
    """Create or edit a rule. POST op=add/remove-N re-renders; op=dry_run tries the draft; op=save saves."""
    rule = get_object_or_404(GuardianRule, pk=pk) if pk else GuardianRule()
    if request.method == "GET":
        form = RuleForm(initial=_rule_initial(rule) if pk else None)
        cond_forms = [ConditionForm(prefix=f"cond-{i}", initial=condition_initial(c))
                      for i, c in enumerate(rule.conditions or [])]
        return _rule_page(request, rule, form, cond_forms)
    op = request.POST.get("op", "save")
    indexes = condition_indexes(request.POST)
    form = RuleForm(request.POST)
    cond_forms = [ConditionForm(request.POST, prefix=f"cond-{i}") for i in indexes]
    if op == "add" or op.startswith("remove-"):
        kept = [(i, f) for i, f in zip(indexes, cond_forms, strict=True) if op != f"remove-{i}"]
        cond_forms = [unbound_copy(f, f"cond-{i}") for i, f in kept]
        if op == "add":
            cond_forms.append(ConditionForm(prefix=f"cond-{(max(indexes) + 1) if indexes else 0}",
                                            initial={"op": "=="}))
        form = RuleForm(initial={name: form[name].value() for name in form.fields})
        return _rule_page(request, rule, form, cond_forms)
    valid = form.is_valid() & all([f.is_valid() for f in cond_forms])
    dry_rows = None
    if valid:
        pairs = [(f, f.condition()) for f in cond_forms]
        conditions = [c for _f, c in pairs if c is not None]
        located = _locate_condition_error(conditions)
        if located is not None:
            number, message = located
            [f for f, c in pairs if c is not None][number - 1].add_error(None, message)
        else:
            draft = _apply(rule, form.cleaned_data, conditions)
            if op == "dry_run":
                dry_rows = _dry_run_draft(draft, form)
            else:
                try:
                    services.save_rule(rule=draft, actor=request.user)
                except ValidationError as exc:
                    _rule_errors_to_form(exc, form)
                else:
                    messages.success(request, f"Rule {draft.name} saved.")
                    return redirect("approvals:rules")
    status = 400 if (form.errors or any(f.errors for f in cond_forms)) else 200
    return _rule_page(request, rule, form, cond_forms, dry_rows=dry_rows, status=status)


def _rule_errors_to_form(exc: ValidationError, form: RuleForm) -> None:
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        if field in form.fields:
            form.add_error(field, errors)
        else:
            form.add_error(None, [f"{field}: {e}" for e in errors] if field != "__all__" else errors)


def _dry_run_draft(draft: GuardianRule, form: RuleForm):
    try:
        draft.full_clean(validate_unique=False)
    except ValidationError as exc:
        _rule_errors_to_form(exc, form)
        return None
    rules = [r for r in GuardianRule.objects.filter(enabled=True).select_related("queue") if r.pk != draft.pk]
    if draft.enabled:
        rules.append(draft)
    rules.sort(key=lambda r: (r.order, r.pk or 10**12))
    return services.dry_run(rules=rules, limit=50)


def _rule_page(request, rule, form, cond_forms, *, dry_rows=None, status=200):
    context = {"rule": rule, "form": form, "cond_forms": cond_forms, "dry_rows": dry_rows,
               "op_choices": ConditionForm.base_fields["op"].choices}
    if request.htmx:
        return render(request, "approvals/partials/rule_form.html", context, status=status)
    return render(request, "approvals/policies/rule_edit.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def rule_toggle(request, pk):
    rule = get_object_or_404(GuardianRule, pk=pk)
    rule.enabled = not rule.enabled
    try:
        services.save_rule(rule=rule, actor=request.user)
    except ValidationError as exc:
        messages.error(request, f"Rule {rule.name} cannot be saved: {' '.join(exc.messages)}")
    if request.htmx:
        rule.refresh_from_db()
        return render(request, "approvals/partials/rule_row.html", {"rule": rule})
    return redirect("approvals:rules")


@require_POST
@role_required(Role.ADMIN)
def rule_delete(request, pk):
    rule = get_object_or_404(GuardianRule, pk=pk)
    services.delete_rule(rule_id=rule.pk, actor=request.user)
    messages.success(request, f"Rule {rule.name} deleted.")
    return redirect("approvals:rules")


@role_required(Role.ADMIN)
def rules_dry_run(request):
    """Which saved rule the 50 most recent requests would hit now."""
    return render(request, "approvals/policies/dry_run.html", {"dry_rows": services.dry_run(limit=50)})

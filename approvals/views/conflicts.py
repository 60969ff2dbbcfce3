"""The conflict panel on the decision page: both requests side by side and the arbitration choices.

The panel (``approvals/partials/conflict_panel.html``) gets its data from the
``conflict_panel_data`` tag, so the decision page only includes it; the
arbitrate action and the panel's own refresh render the same partial.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.forms import ArbitrationForm
from approvals.models import ApprovalRequest, ConflictState, Status
from approvals.services import conflicts
from approvals.views.context import pretty_json
from console.roles import STAFF_ROLES, Role, role_required

PANEL = "approvals/partials/conflict_panel.html"


def _side(req, *, shown: bool) -> dict:
    return {"req": req, "shown": shown, "arguments_text": pretty_json(req.arguments) if shown else "",
            "run_url": f"/runs/{req.trace_id}/" if req.trace_id else "",
            "running": req.status == Status.APPROVED and req.executed_at is None}


def panel_context(user, req) -> dict | None:
    """Both sides of ``req``'s conflict and what ``user`` may do about it; None when there is no conflict.

    The other request is shown to whoever may see it, and to whoever may
    arbitrate this one (they cannot weigh the two otherwise).
    """
    waiters = (list(conflicts.waiting_on(req).filter(pk__in=ApprovalRequest.objects.visible_to(user).values("pk"))
                    .select_related("agent")[:20]) if req.resource else [])
    if not req.conflict_state and not waiters:
        return None
    may_arbitrate = conflicts.may_arbitrate(user, req)
    other = None
    if req.conflict_with_id:
        other = ApprovalRequest.objects.select_related("agent", "queue").filter(pk=req.conflict_with_id).first()
    other_shown = bool(other and (may_arbitrate or ApprovalRequest.objects.visible_to(user).filter(pk=other.pk)
                                  .exists()))
    can_arbitrate = req.is_pending and req.conflict_state == ConflictState.HELD and may_arbitrate
    return {
        "this": _side(req, shown=True),
        "other": _side(other, shown=other_shown) if other else None,
        "waiters": waiters,
        "state": req.conflict_shown_state,
        "can_arbitrate": can_arbitrate,
        "other_running": bool(other and other.status == Status.APPROVED
                              and conflicts.is_active(other, now=timezone.now())),
        "choices": conflicts.CHOICES,
        "live": req.is_held,
    }


def _panel_html(request, req, *, form=None, error: str = "", oob: bool = False) -> str:
    return render_to_string(PANEL, {"req": req, "arb_form": form, "arb_error": error, "oob": oob},
                            request=request)


@require_GET
@role_required(*STAFF_ROLES)
def panel(request, pk):
    """The panel again (it refreshes itself while its request is held)."""
    req = services.get_request_for(request.user, pk)
    return HttpResponse(_panel_html(request, req))


@require_POST
@role_required(Role.REVIEWER)
def arbitrate(request, pk):
    """Let this one go first, let the other go first, or reject this one; with a reason. Exactly once."""
    req = services.get_request_for(request.user, pk)
    form = ArbitrationForm(request.POST)
    error, status = "", 400
    if form.is_valid():
        try:
            req = conflicts.arbitrate_conflict(request_id=req.pk, reviewer=request.user,
                                               choice=form.cleaned_data["choice"], reason=form.cleaned_data["reason"])
        except services.NotReviewer as exc:
            raise PermissionDenied(str(exc)) from exc
        except (conflicts.AlreadyArbitrated, conflicts.CannotGoFirst) as exc:
            error, status = str(exc), 409
        except services.InvalidDecision as exc:
            form.add_error(None, str(exc))
        else:
            form, status = None, 200
    if not request.htmx:
        if status != 200:
            messages.error(request, error or " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("approvals:detail", pk=pk)
    from approvals.views.requests import _decision_section, card_html

    req = services.get_request_for(request.user, pk)
    html = _panel_html(request, req, form=form, error=error)
    html += card_html(request, req, ctx="detail", oob=True) + _decision_section(request, req, oob=True)
    return HttpResponse(html, status=status)

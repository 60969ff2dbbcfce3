"""The reviewer side: my queue, the request card, the decision page, claim/release/decide.

The card (``approvals/partials/request_card.html``) is the one markup for a
request: the queue page loops over it, the actions answer with it and the live
signal re-GETs it from ``card`` below, where the permission check lives.
"""

import json
from collections import defaultdict
from datetime import UTC, datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.forms import DecisionForm
from approvals.models import ApprovalRequest, Decision, Queue, arguments_digest
from approvals.views import context as ctx_data
from console.roles import STAFF_ROLES, Role, has_role, role_required

PAGE_SIZE = 25
CARD_CONTEXTS = ("queue", "detail")


def decidable_queue_ids(user) -> set[int] | None:
    """Queue ids whose requests ``user`` may decide; None means every queue (Admin)."""
    if has_role(user, Role.ADMIN):
        return None
    if has_role(user, Role.REVIEWER):
        return set(Queue.objects.filter(members=user).values_list("pk", flat=True))
    return set()


def mark_decidable(user, requests, queue_ids=...) -> None:
    """Set ``can_decide`` and the four-eyes facts on each request with two queries (not two per card).

    ``approvals_list`` (approving decisions, oldest first), ``approvals_given``,
    ``approved_by_me``: a reviewer who gave the first of two approvals cannot decide again.
    """
    if queue_ids is ...:
        queue_ids = decidable_queue_ids(user)
    by_request = defaultdict(list)
    pks = [req.pk for req in requests]
    if pks:
        for decision in (Decision.objects.filter(request_id__in=pks, verdict__in=services.APPROVING)
                         .select_related("reviewer").order_by("created_at", "id")):
            by_request[decision.request_id].append(decision)
    for req in requests:
        req.approvals_list = by_request.get(req.pk, [])
        req.approvals_given = len(req.approvals_list)
        req.approved_by_me = any(d.reviewer_id == user.pk for d in req.approvals_list)
        req.can_decide = (req.is_pending and not req.approved_by_me
                          and (queue_ids is None or req.queue_id in queue_ids))


def card_html(request, req, *, ctx: str, oob: bool = False, conflict: str = "") -> str:
    mark_decidable(request.user, [req])
    return render_to_string("approvals/partials/request_card.html",
                            {"req": req, "ctx": ctx, "oob": oob, "conflict": conflict}, request=request)


def _ctx(request) -> str:
    value = request.POST.get("ctx") or request.GET.get("ctx")
    return value if value in CARD_CONTEXTS else "detail"


# --- my queue ---------------------------------------------------------------------------------


def _cursor(req) -> str:
    return f"{req.due_at.timestamp():.6f}_{req.pk}"


def _after_cursor(qs, cursor: str):
    due_text, _, pk_text = cursor.partition("_")
    try:
        due = datetime.fromtimestamp(float(due_text), tz=UTC)
        pk = int(pk_text)
    except (ValueError, OverflowError, OSError):
        return qs
    return qs.filter(Q(due_at__gt=due) | Q(due_at=due, pk__gt=pk))


@require_GET
@role_required(Role.REVIEWER)
def my_queue(request):
    """Pending requests the user may decide, soonest due first; keyset pages of PAGE_SIZE."""
    qs = (ApprovalRequest.objects.decidable_by(request.user).filter(due_at__isnull=False)
          .select_related("agent", "queue", "claimed_by").order_by("due_at", "pk"))
    cursor = request.GET.get("cursor", "")
    if cursor:
        qs = _after_cursor(qs, cursor)
    items = list(qs[:PAGE_SIZE + 1])
    more = len(items) > PAGE_SIZE
    items = items[:PAGE_SIZE]
    queue_ids = decidable_queue_ids(request.user)
    mark_decidable(request.user, items, queue_ids)
    context = {"requests": items, "next_cursor": _cursor(items[-1]) if more else "", "ctx": "queue"}
    if request.htmx and (cursor or request.GET.get("rows")):
        # Later pages, and the first page again after a websocket reconnect (pushes may have been missed).
        return render(request, "approvals/partials/queue_rows.html", context)
    if queue_ids is None:
        topics = ["approvals"]
    else:
        topics = [f"queue-{pk}" for pk in sorted(queue_ids)]
    context.update({"topics": topics,
                    "queues": Queue.objects.filter(pk__in=queue_ids) if queue_ids is not None else None,
                    "first": next((r for r in items if r.can_decide), None)})
    return render(request, "approvals/my_queue.html", context)


@require_GET
@role_required(*STAFF_ROLES)
def card(request, pk):
    """The card as the viewer may see it; empty (removing the card) when they may not, or when the
    queue page asks about a request that is no longer pending."""
    req = (ApprovalRequest.objects.visible_to(request.user)
           .select_related("agent", "queue", "claimed_by", "decided_by").filter(pk=pk).first())
    ctx = _ctx(request)
    if req is None or (ctx == "queue" and not req.is_pending):
        return HttpResponse("")
    if ctx == "queue" and not services.may_decide(request.user, req):
        return HttpResponse("")
    html = card_html(request, req, ctx=ctx)
    if ctx == "detail" and not req.is_pending:
        # Someone decided while this page was open: the decision form goes too, saying who.
        # Not news to whoever took part (the decider, or the first of two approvers).
        took_part = req.decided_by_id == request.user.pk or req.approved_by_me
        conflict = "" if took_part else str(services.AlreadyDecided(req))
        html += _decision_section(request, req, conflict=conflict, oob=True)
    elif ctx == "detail" and req.approvals_given > _approvals_shown(request, req.pk):
        # Four eyes: an approval came in since this page's decision section was drawn; it becomes the
        # second approval's (the page sends the count it shows, see approvals_given.html).
        html += _decision_section(request, req, oob=True)
    return HttpResponse(html)


def _approvals_shown(request, pk: int) -> int:
    shown = request.GET.get(f"given-{pk}", "")
    return int(shown) if shown.isascii() and shown.isdigit() and len(shown) < 3 else 1_000


# --- the decision page --------------------------------------------------------------------------


def _next_request(user, req):
    """The next request this user may decide, by due time (wrapping to the first)."""
    qs = (ApprovalRequest.objects.decidable_by(user).filter(due_at__isnull=False)
          .exclude(pk=req.pk).exclude(decisions__reviewer=user).order_by("due_at", "pk"))
    if req.due_at is not None:
        later = qs.filter(Q(due_at__gt=req.due_at) | Q(due_at=req.due_at, pk__gt=req.pk)).first()
        if later:
            return later
    return qs.first()


def _to_approve(req):
    """(arguments, digest) the next approval approves: after a first approval, exactly that approver's."""
    arguments = services.proposed_arguments(req, req.approvals_list)
    return arguments, arguments_digest(req.action, arguments)


def _initial_arguments(req) -> str:
    return json.dumps(_to_approve(req)[0], indent=2, ensure_ascii=False, sort_keys=True)


def _four_eyes_context(req) -> dict:
    arguments, digest = _to_approve(req)
    edited_by_first = req.is_pending and arguments != req.arguments
    return {"approve_digest": digest,
            "proposal_text": ctx_data.pretty_json(arguments) if edited_by_first else "",
            "second_approval": req.is_pending and req.approvals_given > 0}


def _detail(request, req, *, form=None, conflict: str = "", status: int = 200):
    mark_decidable(request.user, [req])
    form = form or DecisionForm(initial={"arguments": _initial_arguments(req)})
    context = {"req": req, "ctx": "detail", "form": form, "conflict": conflict,
               "next_req": _next_request(request.user, req), **ctx_data.detail_context(request.user, req),
               **_four_eyes_context(req)}
    return render(request, "approvals/request_detail.html", context, status=status)


@require_GET
@role_required(*STAFF_ROLES)
def detail(request, pk):
    return _detail(request, services.get_request_for(request.user, pk))


def _decision_section(request, req, *, form=None, conflict: str = "", oob: bool = False) -> str:
    mark_decidable(request.user, [req])
    form = form or DecisionForm(initial={"arguments": _initial_arguments(req)})
    return render_to_string("approvals/partials/decision_form.html",
                            {"req": req, "form": form, "conflict": conflict, "oob": oob,
                             **_four_eyes_context(req)}, request=request)


@require_POST
@role_required(Role.REVIEWER)
def decide(request, pk):
    req = services.get_request_for(request.user, pk)
    form = DecisionForm(request.POST)
    if form.is_valid():
        try:
            req = services.decide_request(
                request_id=req.pk, reviewer=request.user, verdict=form.cleaned_data["verdict"],
                reason=form.cleaned_data["reason"], reason_category=form.cleaned_data["reason_category"],
                arguments=form.cleaned_data["edited_arguments"], digest=_posted_digest(request))
        except (services.AlreadyDecided, services.SameReviewer, services.ArgumentsChanged,
                services.EditAfterApproval) as exc:
            # The section re-renders from the row: who decided, or the arguments as they are now.
            return _decide_answer(request, services.get_request_for(request.user, pk), conflict=str(exc),
                                  status=409)
        except services.NotReviewer as exc:
            raise PermissionDenied(str(exc)) from exc
        except services.InvalidDecision as exc:
            form.add_error(None, str(exc))
        else:
            if not request.htmx:
                return redirect("approvals:detail", pk=req.pk)
            return _decide_answer(request, req)
    if request.htmx:
        return HttpResponse(_decision_section(request, req, form=form), status=400)
    return _detail(request, req, form=form, status=400)


def _posted_digest(request) -> str | None:
    """The digest of the arguments the page showed (a sha256 hex); anything else is ignored."""
    digest = request.POST.get("digest", "").strip().lower()
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def _decide_answer(request, req, *, conflict: str = "", status: int = 200):
    """The decision section (target) plus the card out of band, both re-rendered from the row."""
    if not request.htmx:
        return _detail(request, req, conflict=conflict, status=status)
    html = _decision_section(request, req, conflict=conflict) + card_html(request, req, ctx="detail", oob=True,
                                                                          conflict=conflict)
    return HttpResponse(html, status=status)


def _card_answer(request, req, *, conflict: str = "", status: int = 200):
    if not request.htmx:
        return redirect("approvals:detail", pk=req.pk)
    return HttpResponse(card_html(request, req, ctx=_ctx(request), conflict=conflict), status=status)


@require_POST
@role_required(Role.REVIEWER)
def claim(request, pk):
    req = services.get_request_for(request.user, pk)
    try:
        req = services.claim_request(request_id=req.pk, reviewer=request.user)
    except services.AlreadyClaimed as exc:
        return _card_answer(request, exc.request, conflict=str(exc), status=409)
    except services.AlreadyDecided as exc:
        return _card_answer(request, exc.request, conflict=str(exc), status=409)
    except services.SameReviewer as exc:
        return _card_answer(request, exc.request, conflict=str(exc), status=409)
    except services.NotReviewer as exc:
        raise PermissionDenied(str(exc)) from exc
    return _card_answer(request, req)


@require_POST
@role_required(Role.REVIEWER)
def release(request, pk):
    req = services.get_request_for(request.user, pk)
    if not services.may_decide(request.user, req):
        raise PermissionDenied("Only a reviewer of this request's queue may release it.")
    try:
        req = services.release_request(request_id=req.pk, reviewer=request.user)
    except services.NotClaimant as exc:
        return _card_answer(request, services.get_request_for(request.user, pk),
                            conflict=str(exc), status=409)
    return _card_answer(request, req)

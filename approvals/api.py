"""The agent-facing approvals API (and the reviewer's decision endpoint).

``GET /approvals/{id}?wait=N`` holds the request on the event loop, not a
thread, and gives its DB connection back while it waits (see
``approvals.waiters``: one Redis pub/sub listener per process wakes an
``asyncio.Event`` per waiting request when a decision is published after commit).
``POST /approvals`` honours the key's ``rate_limit_per_s`` (429 with ``Retry-After``).
"""

import json
import logging
import time
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.http import HttpResponse
from ninja import Field, Router, Schema
from ninja import Status as Reply
from ninja.errors import HttpError
from pydantic import field_validator

from approvals import services, waiters
from approvals.services import conflicts
from approvals.models import ApprovalRequest, Status, canonical_json
from console import metrics
from console.api import AgentKeyAuth, agent_auth, api, session_auth
from console.ratelimit import TokenBucketLimiter
from console.roles import STAFF_ROLES, has_role

log = logging.getLogger(__name__)

# Per key, per process, the token bucket trace ingest uses; a bucket of its own, so traces never starve approvals.
rate_limiter = TokenBucketLimiter()

router = Router(tags=["approvals"])

MAX_ARGUMENTS_BYTES = 64 * 1024
MAX_CONTEXT_BYTES = 64 * 1024
MAX_WAIT_S = 60.0
MAX_TIMEOUT_S = 7 * 24 * 3600


def _size_limited(value, limit: int, what: str):
    if value is not None and len(canonical_json(value).encode()) > limit:
        raise ValueError(f"{what} must be at most {limit // 1024} KiB as JSON")
    return value


class PromptRef(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    version: str | int = Field(..., description="the prompt version the agent used (at most 50 characters)")

    @field_validator("version")
    @classmethod
    def version_short(cls, value):
        if len(str(value)) > 50:
            raise ValueError("at most 50 characters")
        return value


class ApprovalIn(Schema):
    action: str = Field(..., min_length=1, max_length=200, description="what the agent wants to do, e.g. refunds.issue")
    arguments: dict[str, Any] = Field(default_factory=dict, description="the call's arguments (JSON object, ≤ 64 KiB)")
    summary: str = Field("", max_length=2000)
    risk: Literal["low", "medium", "high", "critical"]
    trace_id: str | None = Field(None, max_length=64)
    span_id: str | None = Field(None, max_length=32)
    resource: str | None = Field(None, max_length=300, description="what it will change, e.g. crm:customer:42")
    prompt: PromptRef | None = None
    context: dict[str, Any] | None = None
    timeout_s: int | None = Field(None, ge=1, le=MAX_TIMEOUT_S,
                                  description="after this many seconds undecided, the request expires")

    @field_validator("arguments")
    @classmethod
    def arguments_small(cls, value):
        return _size_limited(value, MAX_ARGUMENTS_BYTES, "arguments")

    @field_validator("context")
    @classmethod
    def context_small(cls, value):
        return _size_limited(value, MAX_CONTEXT_BYTES, "context")


class ApprovalOut(Schema):
    id: int
    status: Literal["pending", "approved", "rejected", "expired"]
    decided_by: str | None = Field(None, description="username, rule:<name>, policy:… or system:<why>")
    decided_at: datetime | None
    due_at: datetime | None
    queue: str | None
    url: str
    action: str
    risk: str
    arguments: dict[str, Any] | None = Field(None, description="when approved: the arguments to run (edited ones "
                                                               "if a reviewer changed them)")
    edited: bool
    digest: str = Field(..., description="sha256 of the canonical JSON of action + arguments (the approved ones "
                                         "once approved)")
    reason: str | None
    rule: str | None
    created_at: datetime
    expires_at: datetime | None
    executed_at: datetime | None
    required_approvals: int = Field(1, description="approvals from different reviewers this request needs "
                                                   "(2: four eyes)")
    approvals_given: int = Field(0, description="approvals given so far; pending until it reaches "
                                                "required_approvals, and one reject ends it")
    conflict: dict[str, Any] | None = Field(None, description="set when another pending or running request acts on "
                                        "the same resource: `with` (its id), `state` (held: a reviewer arbitrates; "
                                        "waiting: until the other finishes; resolved), `resource`, `rule`, "
                                        "`arbitration`. A held request stays `pending`")


class DecisionIn(Schema):
    decision: Literal["approve", "reject", "modify"]
    reason: str = Field("", max_length=2000)
    reason_category: str | None = Field(None, max_length=30)
    arguments: dict[str, Any] | None = Field(None, description="the edited arguments (modify only)")
    digest: str | None = Field(None, max_length=64, description="optional: the digest of the arguments you approve "
                                                                "(after a first approval with edits, the edited "
                                                                "ones); 409 if they changed")

    @field_validator("arguments")
    @classmethod
    def arguments_small(cls, value):
        return _size_limited(value, MAX_ARGUMENTS_BYTES, "arguments")


class ExecutionIn(Schema):
    result: Any = None
    error: str | None = Field(None, max_length=10000)
    digest: str | None = Field(None, max_length=64, description="optional: the digest you were given; refused if "
                                                                "it is not the approved one")
    arguments: dict[str, Any] | None = Field(None, description="optional: the arguments you ran; refused if they "
                                                               "are not exactly the approved ones")

    @field_validator("result")
    @classmethod
    def result_small(cls, value):
        return _size_limited(value, MAX_ARGUMENTS_BYTES, "result")

    @field_validator("arguments")
    @classmethod
    def arguments_small(cls, value):
        return _size_limited(value, MAX_ARGUMENTS_BYTES, "arguments")


class ConflictOut(Schema):
    detail: str
    status: str
    decided_by: str | None = None


class ErrorOut(Schema):
    detail: str


def answer(req: ApprovalRequest) -> dict:
    """The request as the API shows it (``req`` loaded with queue and matched_rule)."""
    approved = req.status == Status.APPROVED
    return {
        "id": req.pk,
        "status": req.status,
        "decided_by": req.decider or None,
        "decided_at": req.decided_at,
        "due_at": req.due_at,
        "queue": req.queue.name if req.queue_id else None,
        "url": settings.CONSOLE_BASE_URL + req.url_path,
        "action": req.action,
        "risk": req.risk,
        "arguments": req.answer_arguments,
        "edited": bool(approved and req.final_digest and req.final_digest != req.arguments_digest),
        "digest": req.answer_digest if approved else req.arguments_digest,
        "reason": req.reason or None,
        "rule": req.matched_rule.name if req.matched_rule_id else None,
        "created_at": req.created_at,
        "expires_at": req.expires_at,
        "executed_at": req.executed_at,
        "required_approvals": req.required_approvals,
        "approvals_given": _approvals_given(req),
        "conflict": conflicts.conflict_info(req),
    }


def _approvals_given(req: ApprovalRequest) -> int:
    """Annotated by ``_answerable`` (the async paths cannot query); counted here otherwise."""
    given = getattr(req, "approvals_given", None)
    if given is None:
        given = req.decisions.filter(verdict__in=services.APPROVING).count()
    return given


def _answerable():
    return (ApprovalRequest.objects.select_related("queue", "matched_rule")
            .annotate(approvals_given=Count("decisions", filter=Q(decisions__verdict__in=services.APPROVING))))


def _field_error(field: str, message: str) -> HttpError:
    return HttpError(400, f"Invalid request: {field}: {message}")


def _conflict(request, exc: services.ApprovalError):
    req = exc.request
    body = {"detail": str(exc), "status": req.status if req else "", "decided_by": (req.decider or None) if req else None}
    return api.create_response(request, body, status=409)


def _own_request(agent, pk: int) -> ApprovalRequest | None:
    return _answerable().filter(pk=pk, agent=agent).first()


def _release_connection() -> None:
    """Hand the DB connection back to the pool while a request waits (not inside a test's transaction)."""
    if not connection.in_atomic_block:
        connection.close()


def _own_answer_released(agent, pk: int) -> tuple[str, dict] | None:
    """The request's status and answer (None: not this agent's), its DB connection handed back at once."""
    try:
        req = _own_request(agent, pk)
        return None if req is None else (req.status, answer(req))
    finally:
        _release_connection()


def _carried_answer(message: dict) -> tuple[str, dict] | None:
    """The answer a decision's message carries (``approvals.live.notify_waiters``), if any."""
    body, status = message.get("body"), message.get("status")
    if not isinstance(body, str) or not isinstance(status, str):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return (status, data) if isinstance(data, dict) else None


class WaitingAgentKeyAuth(AgentKeyAuth):
    """The agent key check for the long-polling read: gives its DB connection back at once,
    so hundreds of waiting agents do not hold hundreds of pooled connections."""

    async def authenticate(self, request, token: str):
        return await sync_to_async(self._authenticate_released)(request, token)

    def _authenticate_released(self, request, token: str):
        try:
            return AgentKeyAuth.authenticate(self, request, token)
        finally:
            _release_connection()


waiting_agent_auth = WaitingAgentKeyAuth()


@router.post("/approvals", auth=agent_auth, response={201: ApprovalOut, 429: ErrorOut}, url_name="approvals_create",
             summary="Ask permission to act")
def create_approval(request, payload: ApprovalIn, response: HttpResponse):
    """A guardian rule may decide at once (approved/rejected, with `reason`); otherwise the request is
    pending in a queue with `due_at`. A paused agent is answered `rejected` with reason `paused: …`.
    Send `Idempotency-Key` to make retries return the same request. A key over its `rate_limit_per_s`
    gets 429 with `Retry-After` (seconds), and so does an agent that already has
    `APPROVALS_MAX_PENDING_PER_AGENT` pending requests (nothing is created)."""
    limit = request.agent_key.rate_limit_per_s
    if limit and not rate_limiter.allow(request.agent_key.pk, limit):
        response["Retry-After"] = "1"
        return Reply(429, {"detail": f"This key is over its limit of {limit} requests per second."})
    key = request.headers.get("Idempotency-Key", "").strip() or None
    if key is not None and len(key) > 200:
        raise _field_error("Idempotency-Key", "at most 200 characters")
    new = services.NewRequest(
        action=payload.action, risk=payload.risk, arguments=payload.arguments, summary=payload.summary,
        trace_id=payload.trace_id or "", span_id=payload.span_id or "", resource=payload.resource or "",
        prompt_name=payload.prompt.name if payload.prompt else "",
        prompt_version=str(payload.prompt.version) if payload.prompt else "",
        context=payload.context, timeout_s=payload.timeout_s,
    )
    try:
        req, created = services.create_request(agent=request.agent, new=new, idempotency_key=key)
    except services.TooManyPending as exc:
        _note_pending_limit(request.agent, exc.limit)
        response["Retry-After"] = "60"
        return Reply(429, {"detail": str(exc)})
    if created:
        metrics.APPROVAL_REQUESTS.labels(agent=request.agent.name, outcome=req.status).inc()
    else:
        response["Idempotent-Replayed"] = "true"
    req = _own_request(request.agent, req.pk)
    return Reply(201, answer(req))


PENDING_LIMIT_LOG_EVERY_S = 60.0
_pending_limit_logged: dict[int, float] = {}  # agent id -> when its last refusal was logged (monotonic)


def _note_pending_limit(agent, limit: int) -> None:
    """Count a refusal at the pending limit; log it once per agent and minute (an agent retrying in a
    loop gets a 429 per request, and the log should say so once, not drown in it)."""
    metrics.APPROVAL_REQUESTS.labels(agent=agent.name, outcome="refused_pending_limit").inc()
    now = time.monotonic()
    if now - _pending_limit_logged.get(agent.pk, float("-inf")) < PENDING_LIMIT_LOG_EVERY_S:
        return
    if len(_pending_limit_logged) >= 10_000:
        _pending_limit_logged.clear()
    _pending_limit_logged[agent.pk] = now
    log.warning("approvals: agent %s has %d pending requests (APPROVALS_MAX_PENDING_PER_AGENT); "
                "refusing new ones with 429 until reviewers decide some", agent.name, limit)


async def _wait_until_decided(agent, pk: int, wait: float) -> tuple[str, dict] | None:
    """The request's status and answer once decided (or at the end of ``wait``); None: not this agent's.

    A woken waiter answers with what the decision's message carries (rendered once from the committed row)
    instead of reading the row again: under Django's handler each read is a hop to this request's thread
    and a query, and hundreds of them at once (woken together, or re-reading together) starve the loop.
    """
    load = sync_to_async(_own_answer_released)
    return await waiters.wait_until_decided(pk, wait, lambda: load(agent, pk),
                                            lambda found: found is None or found[0] != Status.PENDING,
                                            from_message=_carried_answer)


@router.get("/approvals/{approval_id}", auth=waiting_agent_auth, response={200: ApprovalOut, 404: ErrorOut},
            url_name="approvals_detail", summary="A request's state; wait up to N seconds for the decision")
async def get_approval(request, approval_id: int, wait: float = 0):
    """Without `wait`, answers at once. With `wait`, answers as soon as the request is decided or expires,
    or after `wait` seconds (capped at 60) with `status: pending`. Holding costs no thread."""
    if wait < 0 or wait != wait:
        raise _field_error("wait", "seconds to wait, 0 to 60")
    found = await _wait_until_decided(request.agent, approval_id, min(float(wait), MAX_WAIT_S))
    if found is None:
        return Reply(404, {"detail": "No such approval request for this agent."})
    return Reply(200, found[1])


@router.post("/approvals/{approval_id}/execution", auth=agent_auth,
             response={200: ApprovalOut, 404: ErrorOut, 409: ConflictOut}, url_name="approvals_execution",
             summary="Report, once, that the approved action ran")
def report_execution(request, approval_id: int, payload: ExecutionIn):
    """Refused (409) when the request is not approved, when execution was already reported, or when
    `digest` (or `arguments`) is not the approved arguments' digest (or the approved arguments)."""
    if _own_request(request.agent, approval_id) is None:
        return Reply(404, {"detail": "No such approval request for this agent."})
    try:
        services.record_execution(request_id=approval_id, agent=request.agent, result=payload.result,
                                  error=payload.error or "", digest=payload.digest, arguments=payload.arguments)
    except (services.NotApproved, services.AlreadyExecuted, services.DigestMismatch) as exc:
        return _conflict(request, exc)
    return Reply(200, answer(_own_request(request.agent, approval_id)))


@router.post("/approvals/{approval_id}/decision", auth=session_auth,
             response={200: ApprovalOut, 403: ErrorOut, 404: ErrorOut, 409: ConflictOut},
             url_name="approvals_decision", summary="Decide a request (reviewers, with their session)")
def decide_approval(request, approval_id: int, payload: DecisionIn):
    """Reviewers of the request's queue and Admins (404 for a request outside the reviewer's queues, as for
    a missing one). 409 with `decided_by` when someone decided first.
    Four eyes (`required_approvals` 2): the first approval leaves the request pending, the second must come
    from a different reviewer (409 for the same one) and approves exactly the first approver's arguments
    (409 for an edit, or when `digest` is not theirs); one reject ends it. Agent keys can never decide."""
    user = request.auth
    if not has_role(user, *STAFF_ROLES):
        return Reply(403, {"detail": "Your role does not allow deciding approvals."})
    # A reviewer outside the request's queue gets the same 404 as for a missing id: a 403 would tell them
    # the request exists.
    if not ApprovalRequest.objects.visible_to(user).filter(pk=approval_id).exists():
        return Reply(404, {"detail": "No such approval request."})
    if payload.decision == "modify" and payload.arguments is None:
        raise _field_error("arguments", "a modify decision needs the edited arguments")
    try:
        req = services.decide_request(request_id=approval_id, reviewer=user, verdict=payload.decision,
                                      reason=payload.reason, reason_category=payload.reason_category or "",
                                      arguments=payload.arguments, digest=payload.digest)
    except services.NotReviewer:
        return Reply(403, {"detail": "Only reviewers of this request's queue (or Admins) may decide it."})
    except (services.AlreadyDecided, services.SameReviewer, services.ArgumentsChanged,
            services.EditAfterApproval) as exc:
        return _conflict(request, exc)
    except services.InvalidDecision as exc:
        raise _field_error("reason_category" if "reason_category" in str(exc) else "decision", str(exc)) from exc
    return Reply(200, answer(_answerable().get(pk=req.pk)))

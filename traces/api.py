"""``GET /api/v1/runs`` and ``GET /api/v1/runs/{trace_id}``.

An agent key sees only its own agent's runs (another agent's run is a 404);
a logged-in user with a staff role sees all of them.
"""

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from console.api import agent_auth, session_auth
from console.roles import STAFF_ROLES, has_role
from traces import search
from traces.models import Run, RunStatus, Span

router = Router(tags=["traces"])

MAX_PAGE = 200
DEFAULT_SPANS, MAX_SPANS = 1000, 5000  # spans per run read: a run may hold many thousands
MAX_COST = Decimal("9999999999")  # the cost column holds 10 integer digits


class RunOut(Schema):
    trace_id: str
    agent: str
    name: str
    task: str
    status: RunStatus
    has_pending_approval: bool
    session_id: str
    service_name: str
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    span_count: int
    error_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: Decimal
    prompt_name: str
    prompt_version: str
    last_seq: int = Field(..., description="highest span seq so far: fetch newer spans with after_seq")
    updated_at: datetime

    @staticmethod
    def resolve_agent(obj) -> str:
        return obj.agent.name


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(None, description="pass as cursor for the next (older) page")


class SpanOut(Schema):
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    status: str
    status_message: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    operation: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cache_tokens: int
    reasoning_tokens: int
    cost: Decimal
    tool_name: str
    tool_arguments: object | None
    input_text: str
    output_text: str
    attributes: dict
    events: list
    links: list
    prompt_name: str
    prompt_version: str
    redaction_count: int
    seq: int


class RunDetail(RunOut):
    spans: list[SpanOut]

    @staticmethod
    def resolve_spans(obj):
        return obj.spans_list


def visible_runs(request):
    """Runs the caller may read: the key's agent's, or all for staff; 403 otherwise."""
    runs = Run.objects.select_related("agent")
    agent = getattr(request, "agent", None)
    if agent is not None:
        return runs.filter(agent=agent)
    if has_role(request.user, *STAFF_ROLES):
        return runs
    raise HttpError(403, "Your role does not allow reading runs.")


@router.get("/runs", auth=[agent_auth, session_auth], response=RunPage, summary="List runs, newest first")
def list_runs(
    request,
    agent: str | None = None,
    status: RunStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_cost: Decimal | None = Query(None, ge=0, le=MAX_COST),
    min_duration_ms: int | None = None,
    has_error: bool | None = None,
    has_pending_approval: bool | None = None,
    prompt_name: str | None = None,
    prompt_version: str | None = None,
    q: str | None = Query(None, max_length=200, description="free text in run and span names and span content"),
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_PAGE),
):
    """Runs with filters; keyset pagination by id (``next_cursor``), stable under inserts."""
    runs = visible_runs(request)
    if agent:
        runs = runs.filter(agent__name__iexact=agent)
    if status:
        runs = runs.filter(status=status)
    if since:
        runs = runs.filter(started_at__gte=since)
    if until:
        runs = runs.filter(started_at__lt=until)
    if min_cost is not None:
        runs = runs.filter(cost__gte=min_cost)
    if min_duration_ms is not None:
        runs = runs.filter(duration_ms__gte=min_duration_ms)
    if has_error is not None:
        runs = runs.filter(error_count__gt=0) if has_error else runs.filter(error_count=0)
    if has_pending_approval is not None:
        runs = runs.filter(has_pending_approval=has_pending_approval)
    if prompt_name:
        runs = runs.filter(prompt_name=prompt_name)
    if prompt_version:
        runs = runs.filter(prompt_version=prompt_version)
    if q:
        matching = Span.objects.filter(run_id=OuterRef("pk")).filter(
            Q(name__icontains=q) | Q(input_text__icontains=q) | Q(output_text__icontains=q)
            | Q(tool_name__icontains=q))
        runs = runs.filter(Q(name__icontains=q) | Q(task__icontains=q) | Exists(matching))
    if cursor:
        if not (cursor.isascii() and cursor.isdigit()):
            raise HttpError(400, "Invalid request: cursor: must be a value from next_cursor")
        runs = runs.filter(id__lt=int(cursor))
    try:
        with search.bounded_search(bool(q)):
            items = list(runs.order_by("-id")[: limit + 1])
    except search.SearchTimedOut as exc:
        raise HttpError(400, f"Invalid request: q: the search ran past {settings.RUNS_SEARCH_TIMEOUT_MS} ms "
                             "and was stopped; narrow it with since/until (or other filters).") from exc
    next_cursor = str(items[limit - 1].pk) if len(items) > limit else None
    return {"items": items[:limit], "next_cursor": next_cursor}


@router.get("/runs/{trace_id}", auth=[agent_auth, session_auth], response=RunDetail,
            summary="One run with its spans")
def get_run(request, trace_id: str, after_seq: int = Query(0, ge=0, description="only spans with a higher seq"),
            limit: int = Query(DEFAULT_SPANS, ge=1, le=MAX_SPANS, description="at most this many spans: those with "
                               "the lowest seqs after after_seq; page on with after_seq until last_seq")):
    """The run of ``trace_id`` (32 hex characters) with (a page of) its spans in start order."""
    run = get_object_or_404(visible_runs(request), trace_id=trace_id.lower())
    page = list(Span.objects.filter(run=run, seq__gt=after_seq).order_by("seq")[:limit])
    run.spans_list = sorted(page, key=lambda span: (span.start_time, span.seq))
    return run

"""The agent-side client of the Agent Ops Console. Needs only httpx and the OpenTelemetry SDK.

Importable without Django (``from agents.client import Console``)::

    from agents.client import Console, use_prompt

    console = Console("http://127.0.0.1:8000", "aoc_...")
    provider = console.setup_tracing("billing-bot")        # OTLP/HTTP to <url>/v1/traces
    tracer = provider.get_tracer("billing-bot")

    prompt = console.get_prompt("refund-reply", default="Be brief. {ticket}")
    with use_prompt(prompt), tracer.start_as_current_span("invoke_agent billing-bot"):
        decision = console.request_approval("refund", {"order": "A-17", "amount": 700}, risk="high",
                                            summary="Refund 700 EUR for a damaged parcel",
                                            resource="crm:customer:42")
        decision.raise_for_status()          # ApprovalRejected / ApprovalExpired / AgentPaused
        do_refund(**decision.arguments)      # the reviewer's edit, if any
        console.report_execution(decision.id, result={"refunded": decision.arguments["amount"]})

Design: ``request_approval`` RETURNS a ``Decision`` (status, approved,
arguments, digest, decided_by, reason, id, url) and never raises for a "no";
``Decision.raise_for_status()`` turns every outcome but approval into an
exception (``ApprovalRejected``, ``ApprovalExpired``, ``AgentPaused``,
``ApprovalPending`` when the caller's ``wait_timeout`` ran out, ``AlreadyExecuted`` for an
approval whose execution is already reported, e.g. given back to a resumed agent). ``guarded``
does that for you, runs the function with the approved arguments and reports
the execution once.

Transport errors: connection errors, 429, 502, 503 and 504 (and 500 on GETs) are retried with
exponential backoff and jitter, honouring ``Retry-After`` (``max_retries``,
then ``ConsoleUnavailable``); the approval's ``Idempotency-Key`` is made once
per call and reused by every retry. 400 raises ``BadRequest`` with the
server's field errors in ``.errors``/``.fields``; 401 ``Unauthorized``; 403
``Forbidden``; 404 ``NotFound``; 409 ``Conflict``.
"""

from agents.client.console import Console, Decision, Prompt
from agents.client.errors import (
    AgentPaused,
    AlreadyExecuted,
    ApprovalError,
    ApprovalExpired,
    ApprovalPending,
    ApprovalRejected,
    BadRequest,
    Conflict,
    ConsoleError,
    ConsoleUnavailable,
    Forbidden,
    NotFound,
    Unauthorized,
)
from agents.client.guard import Guard
from agents.client.tracing import (
    PROMPT_NAME_ATTR,
    PROMPT_VERSION_ATTR,
    PromptTagger,
    current_ids,
    current_prompt,
    setup_tracing,
    use_prompt,
)

__all__ = [
    "AgentPaused", "AlreadyExecuted", "ApprovalError", "ApprovalExpired", "ApprovalPending", "ApprovalRejected",
    "BadRequest",
    "Conflict", "Console", "ConsoleError", "ConsoleUnavailable", "Decision", "Forbidden", "Guard",
    "NotFound", "PROMPT_NAME_ATTR", "PROMPT_VERSION_ATTR", "Prompt", "PromptTagger", "Unauthorized",
    "current_ids", "current_prompt", "setup_tracing", "use_prompt",
]

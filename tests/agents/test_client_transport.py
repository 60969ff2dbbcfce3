"""The client's own logic (retries, idempotency keys, ETags, wait loop, guard) against a scripted stub.

The same behaviours against the real console are in test_client_live.py.
"""

import socket
from urllib.parse import parse_qs, urlparse

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents.client import (
    AgentPaused,
    ApprovalExpired,
    ApprovalPending,
    ApprovalRejected,
    BadRequest,
    Conflict,
    Console,
    ConsoleError,
    ConsoleUnavailable,
    Decision,
    NotFound,
    PromptTagger,
    Unauthorized,
    use_prompt,
)
from tests.agents.stub_http import StubServer

WHOAMI = {"agent": "billing-bot", "key_prefix": "aoc_x", "paused": False}


def approval(status="pending", **fields):
    return {"id": 7, "status": status, "decided_by": None, "due_at": None, "queue": "default",
            "url": "http://console/approvals/7/", **fields}


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server


def console_for(stub, **kwargs):
    console = Console(stub.url, "aoc_test", **kwargs)
    console.slept = []
    console._sleep = console.slept.append
    return console


def test_503_is_retried_after_the_delay_retry_after_announces(stub):
    stub.script = [(503, {"Retry-After": "2"}, {"detail": "busy"}), (200, {}, WHOAMI)]
    console = console_for(stub)
    assert console.whoami() == WHOAMI
    assert console.slept == [2.0]
    assert len(stub.requests) == 2


def test_429_without_retry_after_backs_off_exponentially_then_gives_up(stub):
    stub.script = [(429, {}, {"detail": "slow down"})]
    console = console_for(stub, max_retries=3, backoff_s=1.0)
    with pytest.raises(ConsoleUnavailable) as exc:
        console.whoami()
    assert exc.value.status == 429
    assert len(stub.requests) == 4
    assert [round(d) for d in console.slept] != [] and len(console.slept) == 3
    assert 0.5 <= console.slept[0] <= 1.0 and 2.0 <= console.slept[2] <= 4.0


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    console = Console(f"http://127.0.0.1:{port}", "aoc_test", max_retries=2)
    slept = []
    console._sleep = slept.append
    with pytest.raises(ConsoleUnavailable, match="ConnectError"):
        console.whoami()
    assert len(slept) == 2


def test_idempotency_key_is_reused_by_every_retry_and_new_per_call(stub):
    stub.script = [(503, {"Retry-After": "0"}, None), (502, {}, None), (201, {}, approval("approved")),
                   (201, {}, approval("approved"))]
    console = console_for(stub)
    console.request_approval("refund", {"amount": 10}, "low", wait=False)
    first_call = [r[2]["Idempotency-Key"] for r in stub.requests]
    assert len(first_call) == 3 and len(set(first_call)) == 1
    console.request_approval("refund", {"amount": 10}, "low", wait=False)
    assert stub.requests[-1][2]["Idempotency-Key"] != first_call[0]


def test_explicit_idempotency_key_is_sent(stub):
    stub.script = [(201, {}, approval("approved"))]
    console_for(stub).request_approval("refund", {}, "low", idempotency_key="order-17-refund")
    assert stub.requests[0][2]["Idempotency-Key"] == "order-17-refund"


def test_400_raises_bad_request_with_the_servers_field_errors(stub):
    errors = [{"field": "risk", "message": "Input should be 'low', 'medium', 'high' or 'critical'"}]
    stub.script = [(400, {}, {"detail": "Invalid request: risk: ...", "errors": errors})]
    with pytest.raises(BadRequest) as exc:
        console_for(stub).request_approval("refund", {}, "extreme")
    assert exc.value.fields == {"risk": errors[0]["message"]}
    assert len(stub.requests) == 1  # a 400 is never retried


def test_401_raises_unauthorized(stub):
    stub.script = [(401, {"WWW-Authenticate": "Bearer"}, {"detail": "Missing, malformed, unknown or revoked"})]
    with pytest.raises(Unauthorized):
        console_for(stub).whoami()


def test_prompt_is_revalidated_with_its_etag_and_304_reuses_the_cache(stub):
    body = {"name": "refund-reply", "version": 3, "label": "production", "template": "Hello {name}"}

    def respond(method, path, headers, _):
        if headers.get("If-None-Match") == '"v3"':
            return 304, {"ETag": '"v3"'}, None
        return 200, {"ETag": '"v3"'}, body

    stub.responder = respond
    console = console_for(stub)
    first = console.get_prompt("refund-reply")
    second = console.get_prompt("refund-reply")
    assert first.version == "3" and first.render(name="Ann") == "Hello Ann"
    assert second is first
    assert "If-None-Match" not in stub.requests[0][2]
    assert stub.requests[1][2]["If-None-Match"] == '"v3"'
    assert parse_qs(urlparse(stub.requests[1][1]).query) == {"label": ["production"]}


def test_missing_prompt_falls_back_to_the_default_or_raises(stub):
    stub.script = [(404, {}, {"detail": "Not Found"})]
    console = console_for(stub)
    prompt = console.get_prompt("nope", default="Built in {x}")
    assert (prompt.source, prompt.version, prompt.template) == ("default", None, "Built in {x}")
    with pytest.raises(NotFound):
        console.get_prompt("nope")


def test_waiting_loops_on_wait_in_chunks_of_at_most_60s_and_returns_the_edit(stub):
    stub.script = [(201, {}, approval()), (200, {}, approval()), (200, {}, approval()),
                   (200, {}, approval("approved", decided_by="rita", arguments={"amount": 400},
                                      digest="sha256:abc", reason="cap at 400"))]
    decision = console_for(stub).request_approval("refund", {"amount": 700}, "high", wait_timeout=600)
    gets = [r for r in stub.requests if r[0] == "GET"]
    waits = [int(parse_qs(urlparse(r[1]).query)["wait"][0]) for r in gets]
    assert len(gets) == 3 and all(1 <= w <= 60 for w in waits)
    assert decision.approved and decision.edited
    assert decision.arguments == {"amount": 400} and decision.requested_arguments == {"amount": 700}
    assert (decision.decided_by, decision.digest, decision.reason) == ("rita", "sha256:abc", "cap at 400")


def test_a_caller_timeout_shorter_than_a_second_returns_the_pending_state(stub):
    stub.script = [(201, {}, approval()), (200, {}, approval())]
    decision = console_for(stub).request_approval("refund", {}, "high", wait_timeout=0.5)
    assert decision.pending
    assert "wait" not in stub.requests[-1][1]
    with pytest.raises(ApprovalPending):
        decision.raise_for_status()


@pytest.mark.parametrize("status, decided_by, reason, error", [
    ("rejected", "rita", "too much", ApprovalRejected),
    ("expired", "system:timeout", "nobody decided", ApprovalExpired),
    ("rejected", "system:paused", "paused: loop detected", AgentPaused),
])
def test_raise_for_status_names_each_refusal(status, decided_by, reason, error):
    with pytest.raises(error) as exc:
        Decision.from_body(approval(status, decided_by=decided_by, reason=reason), requested={}).raise_for_status()
    assert exc.value.decision.status == status and reason in str(exc.value)
    approved = Decision.from_body(approval("approved"), requested={"a": 1})
    assert approved.raise_for_status() is approved and approved.arguments == {"a": 1}


def test_trace_ids_and_prompt_default_to_the_current_span_and_use_prompt(stub):
    stub.script = [(201, {}, approval("approved"))]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(PromptTagger())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    console = console_for(stub)
    with use_prompt("refund-reply", 4), tracer.start_as_current_span("refund") as span:
        console.request_approval("refund", {"amount": 1}, "low")
    ctx = span.get_span_context()
    body = stub.requests[0][3]
    assert body["trace_id"] == format(ctx.trace_id, "032x") and body["span_id"] == format(ctx.span_id, "016x")
    assert body["prompt"] == {"name": "refund-reply", "version": "4"}
    attrs = exporter.get_finished_spans()[0].attributes
    assert attrs["console.prompt.name"] == "refund-reply" and attrs["console.prompt.version"] == "4"


def test_without_a_span_or_prompt_those_fields_are_left_out(stub):
    stub.script = [(201, {}, approval("approved"))]
    console_for(stub).request_approval("refund", {"amount": 1}, "low", summary="s")
    assert set(stub.requests[0][3]) == {"action", "arguments", "risk", "summary"}


def test_a_retried_execution_report_that_finds_the_first_one_stored_counts_as_done(stub):
    stored = approval("approved", executed_at="2026-11-25T12:00:00Z")
    stub.script = [(503, {"Retry-After": "0"}, None), (409, {}, {"detail": "already reported"}), (200, {}, stored)]
    assert console_for(stub).report_execution(7, result={"ok": True}, digest="d1") == stored
    assert stub.requests[0][3] == {"result": {"ok": True}, "digest": "d1"}


def test_a_retried_execution_report_refused_for_another_reason_raises(stub):
    stub.script = [(503, {"Retry-After": "0"}, None), (409, {}, {"detail": "digest mismatch"}),
                   (200, {}, approval("approved"))]
    with pytest.raises(Conflict, match="digest mismatch"):
        console_for(stub).report_execution(7, result={"ok": True}, digest="d1")


def test_a_first_execution_report_refused_with_409_raises(stub):
    stub.script = [(409, {}, {"detail": "already reported"})]
    with pytest.raises(Conflict):
        console_for(stub).report_execution(7, error="boom")


def guard_stub(stub, decision):
    def respond(method, path, headers, body):
        if path == "/api/v1/approvals":
            return 201, {}, decision
        return 200, {}, {"id": 7, "reported": True}

    stub.responder = respond


def test_guard_runs_the_function_with_the_edited_arguments_and_reports_once(stub):
    guard_stub(stub, approval("approved", arguments={"order": "A-1", "amount": 400}, edited=True, digest="d9"))
    console = console_for(stub)
    calls = []

    @console.guarded("refund", risk="high", summary=lambda a: f"Refund {a['amount']}",
                     resource=lambda a: f"order:{a['order']}")
    def refund(order, amount=700):
        calls.append((order, amount))
        return {"refunded": amount}

    assert refund("A-1") == {"refunded": 400}
    assert calls == [("A-1", 400)]
    asked = stub.requests[0][3]
    assert asked["arguments"] == {"order": "A-1", "amount": 700}
    assert asked["summary"] == "Refund 700" and asked["resource"] == "order:A-1"
    reports = [r for r in stub.requests if r[1].endswith("/execution")]
    assert [r[3] for r in reports] == [{"result": {"refunded": 400}, "digest": "d9"}]


def test_guard_never_runs_a_rejected_action(stub):
    guard_stub(stub, approval("rejected", decided_by="rita", reason="too much"))
    console = console_for(stub)
    calls = []
    refund = console.guarded("refund", risk="high")(lambda amount: calls.append(amount))
    with pytest.raises(ApprovalRejected, match="too much"):
        refund(900)
    assert calls == [] and len(stub.requests) == 1


def test_guard_reports_the_error_and_reraises(stub):
    guard_stub(stub, approval("approved"))
    console = console_for(stub)
    with pytest.raises(RuntimeError, match="disk full"):
        with console.guarded("deploy", risk="high", arguments={"service": "api"}) as decision:
            assert decision.arguments == {"service": "api"}
            raise RuntimeError("disk full")
    reports = [r[3] for r in stub.requests if r[1].endswith("/execution")]
    assert reports == [{"error": "RuntimeError: disk full"}]


def test_guard_context_manager_reports_the_blocks_result(stub):
    guard_stub(stub, approval("approved"))
    console = console_for(stub)
    with console.guarded("deploy", risk="high", arguments={"service": "api"}) as decision:
        decision.result = {"version": "1.2.3"}
    reports = [r[3] for r in stub.requests if r[1].endswith("/execution")]
    assert reports == [{"result": {"version": "1.2.3"}}]


def test_a_per_run_prompt_is_asked_for_that_run_and_not_cached(stub):
    body = {"name": "support-reply", "version": 5, "label": "production", "kind": "chat",
            "template": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "{ticket}"}]}
    stub.script = [(200, {"ETag": '"v5"'}, body)]
    console = console_for(stub)
    prompt = console.get_prompt("support-reply", run="ab" * 16)
    console.get_prompt("support-reply", run="cd" * 16)
    assert prompt.messages == body["template"] and prompt.template == "Be kind.\n\n{ticket}"
    assert parse_qs(urlparse(stub.requests[0][1]).query)["run"] == ["ab" * 16]
    assert all("If-None-Match" not in r[2] for r in stub.requests)


def test_a_fallback_prompt_without_a_version_is_not_sent_with_the_approval(stub):
    stub.script = [(201, {}, approval("approved"))]
    with use_prompt("support-reply"):
        console_for(stub).request_approval("refund", {"amount": 1}, "low")
    assert "prompt" not in stub.requests[0][3]


def test_a_500_is_retried_for_a_read_but_not_for_a_write(stub):
    stub.script = [(500, {}, {"detail": "boom"}), (200, {}, WHOAMI)]
    console = console_for(stub)
    assert console.whoami() == WHOAMI and len(stub.requests) == 2
    stub.script = [(500, {}, {"detail": "boom"})]
    with pytest.raises(ConsoleError) as exc:
        console.report_execution(7, result=1)
    assert exc.value.status == 500 and len(stub.requests) == 3


def test_a_400_without_a_field_list_still_names_the_field(stub):
    stub.script = [(400, {}, {"detail": "Invalid request: Idempotency-Key: at most 200 characters"})]
    with pytest.raises(BadRequest) as exc:
        console_for(stub).request_approval("refund", {}, "low", idempotency_key="k" * 300)
    assert exc.value.fields == {"Idempotency-Key": "at most 200 characters"}

"""The base of a simulated agent: spans that look like a real agent's, paced for human eyes.

A ``SimAgent`` talks to the console only through ``agents.client``: spans go
out through the OTLP exporter, approvals through the approvals API, prompts
through the prompts API.
"""

import json
import logging
import random
import threading
import time
import uuid

from opentelemetry.trace import SpanKind, Status, StatusCode

from agents.client import (
    PROMPT_NAME_ATTR,
    PROMPT_VERSION_ATTR,
    Console,
    ConsoleError,
    Decision,
    Guard,
    Prompt,
    use_prompt,
)
from agents.fleet import texts

log = logging.getLogger("agents.fleet")

PRICE_HINT = {"gpt-4o-mini": "openai", "gpt-4o": "openai", "gpt-4.1": "openai", "o3-mini": "openai",
              "claude-sonnet-4": "anthropic", "claude-3-5-haiku": "anthropic", "claude-opus-4": "anthropic"}


class Stopped(Exception):
    """The fleet is stopping: end the run now."""

    def __init__(self, message: str = "interrupted: the agent was stopped"):
        super().__init__(message)


class SimAgent:
    name = "agent"
    prompt_name = "agent-prompt"
    builtin_prompts = {"1": "You are a helpful agent."}
    run_gap_s = (4.0, 9.0)  # seconds between run starts at rate 1

    def __init__(self, console: Console, tracer, *, rng: random.Random, rate: float, stop: threading.Event,
                 mischief: "Mischief", max_waiting: int = 3):
        self.console = console
        self.tracer = tracer
        self.rng = rng
        self.rate = max(rate, 0.01)
        self.stop = stop
        self.mischief = mischief
        self.waiting = threading.BoundedSemaphore(max_waiting)
        self._prompt_missing_until = 0.0
        self._paused_until = 0.0
        self.runs = 0
        self.approvals = 0

    # --- pacing --------------------------------------------------------------

    def pause(self, lo: float, hi: float) -> None:
        """Sleep a random while (scaled by the rate); raise Stopped if the fleet stops meanwhile."""
        if self.stop.wait(self.rng.uniform(lo, hi) / self.rate):
            raise Stopped()

    def next_gap(self) -> float:
        return self.rng.uniform(*self.run_gap_s) / self.rate

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def back_off_paused(self, seconds: float = 30.0) -> None:
        self._paused_until = time.monotonic() + seconds
        log.info("%s is paused by the console; idling %.0fs", self.name, seconds)

    # --- prompts -------------------------------------------------------------

    def prompt(self, builtin_version: str = "1", *, run: str | None = None) -> Prompt:
        """The console's version for this run (canary split per run), or a built-in one while it has none."""
        if time.monotonic() >= self._prompt_missing_until:
            try:
                prompt = self.console.get_prompt(self.prompt_name, default="", run=run)
                if prompt.source == "console" and prompt.template:
                    return prompt
            except ConsoleError as exc:
                log.debug("%s: prompt %s unavailable: %s", self.name, self.prompt_name, exc)
            self._prompt_missing_until = time.monotonic() + 60
        return Prompt(name=self.prompt_name, version=builtin_version,
                      template=self.builtin_prompts[builtin_version], source="default")

    # --- one run -------------------------------------------------------------

    def run(self) -> None:
        """One task, traced as one run; errors are logged by the caller."""
        self.runs += 1
        task = self.choose_task()
        with self.tracer.start_as_current_span(
            f"invoke_agent {self.name}", kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.name,
                        "gen_ai.agent.id": self.name,
                        "gen_ai.conversation.id": task.get("conversation", uuid.uuid4().hex[:12]),
                        "console.task": task["title"], "input.value": task["title"]},
        ) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            prompt = self.prompt(task.get("prompt_version", "1"), run=trace_id)
            root.set_attribute(PROMPT_NAME_ATTR, prompt.name)
            root.set_attribute(PROMPT_VERSION_ATTR, str(prompt.version))
            try:
                with use_prompt(prompt):
                    outcome = self.work(task, prompt)
            except Stopped:
                root.set_attribute("console.outcome", "interrupted")
                raise
            except Exception as exc:
                root.record_exception(exc)
                root.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            root.set_attribute("console.outcome", outcome or "done")
            root.set_attribute("output.value", outcome or "done")

    def choose_task(self) -> dict:
        raise NotImplementedError

    def work(self, task: dict, prompt: Prompt) -> str:
        raise NotImplementedError

    # --- span helpers ----------------------------------------------------------

    def think(self, text: str, lo: float = 0.3, hi: float = 1.0) -> None:
        with self.tracer.start_as_current_span("reasoning", attributes={
                "openinference.span.kind": "CHAIN", "console.span.kind": "decision",
                "gen_ai.operation.name": "reasoning", "output.value": text}):
            self.pause(lo, hi)

    def llm(self, *, system: str, user: str, output: str, model: str = "gpt-4o-mini",
            input_tokens: int | None = None, output_tokens: int | None = None, finish: str = "stop",
            temperature: float = 0.2) -> str:
        provider = PRICE_HINT.get(model, "openai")
        input_tokens = input_tokens or texts.tokens_of(system + user)
        output_tokens = output_tokens or texts.tokens_of(output)
        with self.tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.system": provider,
                "gen_ai.request.model": model, "gen_ai.response.model": model,
                "gen_ai.request.temperature": temperature, "gen_ai.request.max_tokens": 2048,
                "gen_ai.input.messages": texts.messages(system, user),
                "gen_ai.output.messages": texts.output_message(output, finish),
                "gen_ai.response.id": "chatcmpl-" + uuid.uuid4().hex[:20],
                "gen_ai.response.finish_reasons": [finish],
                "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}):
            self.pause(0.6 + min(output_tokens, 800) / 400, 1.2 + min(output_tokens, 800) / 250)
        return output

    def tool(self, name: str, arguments: dict, result, *, lo: float = 0.2, hi: float = 0.9,
             error: str | None = None, resource: str | None = None):
        """A tool call span; ``resource`` names what it touches (``console.resource``, for conflict detection)."""
        call_id = "call_" + uuid.uuid4().hex[:16]
        attributes = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": call_id, "gen_ai.tool.call.arguments": json.dumps(arguments),
            "openinference.span.kind": "TOOL", "tool.name": name, "input.value": json.dumps(arguments)}
        if resource:
            attributes["console.resource"] = resource
        with self.tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
            self.pause(lo, hi)
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
                span.add_event("exception", {"exception.type": "ToolError", "exception.message": error})
                return None
            span.set_attribute("gen_ai.tool.call.result", json.dumps(result))
            span.set_attribute("output.value", json.dumps(result))
        return result

    def retrieve(self, query: str, documents: list[str]) -> list[str]:
        with self.tracer.start_as_current_span("retrieve", attributes={
                "openinference.span.kind": "RETRIEVER", "gen_ai.operation.name": "retrieve",
                "input.value": query, "retrieval.documents": json.dumps(
                    [{"document.id": f"doc-{i}", "document.content": d} for i, d in enumerate(documents)])}):
            self.pause(0.2, 0.8)
        return documents

    def state(self, key: str, before, after) -> None:
        with self.tracer.start_as_current_span(f"state {key}", attributes={
                "console.span.kind": "state", "console.state.key": key,
                "console.state.before": json.dumps(before), "console.state.after": json.dumps(after)}):
            self.pause(0.05, 0.2)

    # --- approvals -------------------------------------------------------------

    def ask(self, action: str, arguments: dict, risk: str, summary: str, *, resource: str | None = None,
            wait_budget_s: float = 900.0, context: dict | None = None) -> Decision | None:
        """Ask approval inside an approval span; wait (interruptibly) up to the budget.

        Returns the Decision (possibly still pending when the budget ran out),
        or None when too many of this agent's runs are already waiting: the
        caller then takes the path that needs no approval.
        """
        if not self.waiting.acquire(blocking=False):
            return None
        try:
            with self.tracer.start_as_current_span(f"approval {action}", attributes={
                    "console.span.kind": "decision", "console.approval.action": action,
                    "console.approval.risk": risk, "console.approval.resource": resource or "",
                    "input.value": json.dumps(arguments)}) as span:
                decision = self.console.request_approval(action, arguments, risk, summary=summary,
                                                         resource=resource, context=context, wait=False)
                self.approvals += 1
                span.set_attribute("console.approval.id", str(decision.id))
                deadline = time.monotonic() + wait_budget_s / self.rate
                while decision.pending and time.monotonic() < deadline:
                    if self.stop.is_set():
                        raise Stopped()
                    decision = self.console.wait_for_decision(decision.id, timeout=5, requested=arguments)
                span.set_attribute("console.approval.status", decision.status)
                if decision.paused:
                    self.back_off_paused()
                return decision
        finally:
            self.waiting.release()

    def execute(self, decision: Decision, tool: str, result_of, *, resource: str | None = None) -> object:
        """Run the approved (maybe edited) arguments as a tool span, inside the client's guard.

        The guard runs nothing unless the decision is approved, hands the block
        exactly the approved arguments (a reviewer's edit, if any) and reports
        the execution once with their digest: the result, or the error (a stop
        included) before re-raising.
        """
        with DecidedGuard(self.console, decision) as approved:
            approved.result = self.tool(tool, approved.arguments, result_of(approved.arguments), resource=resource)
        return approved.result


class DecidedGuard(Guard):
    """The client's ``Guard`` around a decision the agent already waited for (interruptibly, within its
    budget, in ``SimAgent.ask``): the guard's rules apply unchanged, only the asking is done."""

    def __init__(self, console: Console, decision: Decision):
        super().__init__(console, "", "", arguments=decision.requested_arguments)
        self._decision_given = decision

    def ask(self, arguments: dict) -> Decision:
        return self._decision_given.raise_for_status()


class Mischief:
    """Misbehaviour on purpose, now and then, so detectors and reviewers have work.

    ``due(kind)`` says yes at most once per ``every_s`` (scaled by the rate)
    per kind, so a fast load run does not turn into only misbehaviour.
    """

    PERIODS_S = {"loop": 150, "cost_spike": 120, "shared_resource": 90, "disliked_prompt": 0}

    def __init__(self, rng: random.Random, rate: float, enabled: bool = True, always: tuple[str, ...] = ()):
        self.rng = rng
        self.rate = max(rate, 0.01)
        self.enabled = enabled
        self.always = set(always)  # kinds due on every turn (tests, or a demo that wants drama now)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._shared: set[str] = set()

    def due(self, kind: str, chance: float = 0.35) -> bool:
        if kind in self.always:
            return True
        if not self.enabled:
            return False
        with self._lock:
            now = time.monotonic()
            period = self.PERIODS_S[kind] / self.rate
            # The first turn backdates a "last time" by half to all of a period, and keeps it: the first
            # misbehaviour then comes within half a period of the start, not never.
            last = self._last.setdefault(kind, now - period * self.rng.uniform(0.5, 1.0))
            if now - last < period:
                return False
            if self.rng.random() > chance:
                return False
            self._last[kind] = now
            return True

    def shared_resource_turn(self, agent: str, partners: tuple[str, ...]) -> bool:
        """Both partners act on the same resource: the first one to get a turn books it for the others."""
        with self._lock:
            if agent in self._shared:
                self._shared.discard(agent)
                return True
        if self.due("shared_resource"):
            with self._lock:
                self._shared.update(p for p in partners if p != agent)
            return True
        return False

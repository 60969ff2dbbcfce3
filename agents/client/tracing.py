"""OpenTelemetry wiring: export spans to the console, tag them with the prompt version."""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

PROMPT_NAME_ATTR = "console.prompt.name"
PROMPT_VERSION_ATTR = "console.prompt.version"

_current_prompt: contextvars.ContextVar[dict | None] = contextvars.ContextVar("console_prompt", default=None)


@contextmanager
def use_prompt(prompt, version=None) -> Iterator[dict]:
    """Within the block, spans started and approvals requested carry this prompt version.

    ``prompt`` is a ``Prompt`` from ``Console.get_prompt`` or a prompt name
    (then pass ``version``). Works across threads only where the context is
    copied (``contextvars.copy_context``), like every OpenTelemetry context.
    """
    if isinstance(prompt, str):
        ref = {"name": prompt, "version": None if version is None else str(version)}
    else:
        ref = {"name": prompt.name, "version": None if prompt.version is None else str(prompt.version)}
    token = _current_prompt.set(ref)
    try:
        yield ref
    finally:
        _current_prompt.reset(token)


def current_prompt() -> dict | None:
    """``{"name", "version"}`` set by the innermost ``use_prompt``, or None."""
    return _current_prompt.get()


def current_ids() -> tuple[str | None, str | None]:
    """(trace_id, span_id) of the current OpenTelemetry span as hex, or (None, None)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class PromptTagger(SpanProcessor):
    """Sets ``console.prompt.name``/``console.prompt.version`` from ``use_prompt`` on each new span."""

    def on_start(self, span, parent_context=None) -> None:
        ref = _current_prompt.get()
        if ref:
            span.set_attribute(PROMPT_NAME_ATTR, ref["name"])
            if ref.get("version") is not None:
                span.set_attribute(PROMPT_VERSION_ATTR, ref["version"])


def traces_endpoint(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/traces"


def setup_tracing(base_url: str, key: str, service_name: str, *, set_global: bool = True,
                  export_delay_s: float = 1.0, export_timeout_s: float = 10.0, resource_attributes: dict | None = None,
                  exporter: SpanExporter | None = None) -> TracerProvider:
    """A TracerProvider exporting to ``<base_url>/v1/traces`` with the agent's bearer key.

    ``service_name`` names the agent in the console. With ``set_global`` (the
    default) it becomes the process-wide provider, so ``trace.get_tracer()``
    and instrumentation libraries use it; the global provider can be set once
    per process, so several agents in one process pass ``set_global=False``
    and call ``provider.get_tracer(...)``. Call ``provider.shutdown()`` (or
    ``force_flush()``) before exiting so the last spans are sent.
    """
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=traces_endpoint(base_url),
                                    headers={"Authorization": f"Bearer {key}"}, timeout=export_timeout_s)
    attributes = {"service.name": service_name, "gen_ai.agent.name": service_name}
    attributes.update(resource_attributes or {})
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(PromptTagger())
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=export_delay_s * 1000))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider

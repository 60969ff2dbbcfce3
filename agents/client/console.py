"""``Console``: the HTTP side of the client (approvals, execution reports, prompts)."""

import email.utils
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

from agents.client import errors
from agents.client.tracing import current_ids, current_prompt, setup_tracing

log = logging.getLogger("agents.client")

RETRY_STATUSES = {429, 502, 503, 504}
MAX_WAIT_CHUNK_S = 60  # the server holds a ?wait= request at most this long
PAUSED_DECIDER = "system:paused"


@dataclass
class Decision:
    """The state of an approval request as the console answered it.

    ``arguments`` are the ones to run: the reviewer's edit when there is one,
    otherwise the requested ones. Check ``approved`` or call
    ``raise_for_status()``; never run the action on anything else.
    """

    id: int | str
    status: str
    arguments: dict
    requested_arguments: dict
    digest: str | None = None
    decided_by: str | None = None
    reason: str = ""
    url: str | None = None
    due_at: str | None = None
    queue: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    result: object = field(default=None, repr=False)  # set by a guarded block for its execution report

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def edited(self) -> bool:
        """A reviewer changed the arguments before approving."""
        if "edited" in self.raw:
            return bool(self.raw["edited"])
        return self.approved and self.arguments != self.requested_arguments

    @property
    def paused(self) -> bool:
        """Refused because the agent is paused (the console answers rejected, reason "paused: ...")."""
        return self.status == "rejected" and (
            self.decided_by == PAUSED_DECIDER or self.reason.lower().startswith("paused"))

    def raise_for_status(self) -> "Decision":
        """Return self when approved and not yet executed; raise AlreadyExecuted, ApprovalRejected,
        ApprovalExpired, AgentPaused or ApprovalPending."""
        if self.approved and self.raw.get("executed_at"):
            # A resumed agent asking again with the same Idempotency-Key gets the used approval back.
            raise errors.AlreadyExecuted(
                f"approval {self.id} was already executed at {self.raw['executed_at']}; it is not run again", self)
        if self.approved:
            return self
        why = f" ({self.reason})" if self.reason else ""
        who = f" by {self.decided_by}" if self.decided_by else ""
        if self.paused:
            raise errors.AgentPaused(f"approval {self.id}: the agent is paused{why}", self)
        if self.status == "rejected":
            raise errors.ApprovalRejected(f"approval {self.id} rejected{who}{why}", self)
        if self.status == "expired":
            raise errors.ApprovalExpired(f"approval {self.id} expired without a decision{why}", self)
        if self.pending:
            raise errors.ApprovalPending(f"approval {self.id} is still pending", self)
        raise errors.ApprovalError(f"approval {self.id}: unexpected status {self.status!r}", self)

    @classmethod
    def from_body(cls, body: dict, requested: dict | None = None) -> "Decision":
        """Build from the API's answer; ``requested`` are the arguments the agent asked with."""
        status = str(body.get("status", "")).lower()
        answered = body.get("arguments")
        if requested is None:
            requested = answered if answered is not None else {}
        # The console returns arguments to run only once approved; before that, the request's own.
        arguments = answered if status == "approved" and answered is not None else requested
        return cls(
            id=body.get("id"), status=status, arguments=arguments, requested_arguments=requested,
            digest=body.get("digest"), decided_by=body.get("decided_by"), reason=body.get("reason") or "",
            url=body.get("url"), due_at=body.get("due_at"), queue=body.get("queue"), raw=body,
        )


@dataclass
class Prompt:
    """A prompt version to use now. ``source`` is "console", or "default" for the caller's fallback.

    ``template`` is the text (for chat prompts, the messages' contents joined);
    ``messages`` holds a chat prompt's messages as the console sent them.
    """

    name: str
    version: str | None
    template: str
    label: str | None = None
    source: str = "console"
    messages: list | None = None
    model: str = ""
    raw: dict = field(default_factory=dict, repr=False)

    def render(self, **values) -> str:
        return self.template.format(**values)


class Console:
    """Talk to one console as one agent.

    Thread-safe: one instance may be shared by the threads of an agent.
    """

    def __init__(self, base_url: str, key: str, *, timeout: float = 10.0, max_retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "agent-ops-console-client/1",
                     "Accept": "application/json"},
        )
        self._prompt_cache: dict[tuple[str, str], tuple[str, Prompt]] = {}
        self._lock = threading.Lock()
        self._sleep = time.sleep  # tests swap this to record delays instead of sleeping

    # --- lifecycle -------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def setup_tracing(self, service_name: str, **kwargs):
        """``agents.client.setup_tracing`` with this console's URL and key."""
        return setup_tracing(self.base_url, self.key, service_name, **kwargs)

    # --- the API ---------------------------------------------------------

    def whoami(self) -> dict:
        """``{"agent", "key_prefix", "paused"}`` for this key."""
        return self._request("GET", "/api/v1/whoami").json()

    def request_approval(self, action: str, arguments: dict, risk: str, *, summary: str = "",
                         resource: str | None = None, trace_id: str | None = None, span_id: str | None = None,
                         prompt=None, context: dict | None = None, timeout_s: int | None = None,
                         wait: bool = True, wait_timeout: float | None = None,
                         idempotency_key: str | None = None) -> Decision:
        """Ask permission to run ``action`` with ``arguments``; return the ``Decision``.

        ``trace_id``/``span_id`` default to the current OpenTelemetry span and
        ``prompt`` to the one set by ``use_prompt``. With ``wait`` it polls
        ``?wait=`` in chunks of up to 60 s until decided or ``wait_timeout``
        seconds have passed (None: until decided). One ``Idempotency-Key`` is
        used for every retry of this call, so a retry never makes a second request.
        """
        if trace_id is None and span_id is None:
            trace_id, span_id = current_ids()
        body = {"action": action, "arguments": arguments, "risk": risk, "summary": summary}
        optional = {"resource": resource, "trace_id": trace_id, "span_id": span_id,
                    "prompt": _prompt_ref(prompt), "context": context, "timeout_s": timeout_s}
        body.update({k: v for k, v in optional.items() if v is not None})
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        answer = self._request("POST", "/api/v1/approvals", json=body, headers=headers).json()
        decision = Decision.from_body(answer, requested=arguments)
        if wait and decision.pending:
            decision = self.wait_for_decision(decision, timeout=wait_timeout)
        return decision

    def get_approval(self, approval_id, *, requested: dict | None = None) -> Decision:
        """The request's state now."""
        return Decision.from_body(self._request("GET", f"/api/v1/approvals/{approval_id}").json(), requested)

    def wait_for_decision(self, approval, *, timeout: float | None = None,
                          requested: dict | None = None) -> Decision:
        """Hold ``?wait=`` requests (≤ 60 s each) until decided or ``timeout`` s; may return pending.

        ``approval`` is a Decision (its requested arguments are kept) or an id.
        """
        if isinstance(approval, Decision):
            approval_id, requested = approval.id, approval.requested_arguments if requested is None else requested
        else:
            approval_id = approval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = MAX_WAIT_CHUNK_S
            if deadline is not None:
                chunk = min(chunk, int(deadline - time.monotonic()))
            if chunk < 1:
                return self.get_approval(approval_id, requested=requested)
            response = self._request("GET", f"/api/v1/approvals/{approval_id}", params={"wait": chunk},
                                     timeout=chunk + self.timeout)
            decision = Decision.from_body(response.json(), requested)
            if not decision.pending:
                return decision

    def report_execution(self, approval_id, *, result=None, error: str | None = None,
                         digest: str | None = None) -> dict:
        """Report once that the approved action ran (``result``) or failed (``error``).

        Pass the ``digest`` the Decision carried: the console refuses (409,
        ``Conflict``) a report for arguments other than the approved ones, a
        second report, or one for a request that was not approved. A report
        retried after a lost answer that finds the first one stored counts as done.
        """
        body = {"error": str(error)} if error is not None else {"result": _jsonable(result)}
        if digest:
            body["digest"] = digest
        try:
            return self._request("POST", f"/api/v1/approvals/{approval_id}/execution", json=body,
                                 conflict_after_retry_ok=True).json()
        except _AlreadyStoredByUs as exc:
            now = self._request("GET", f"/api/v1/approvals/{approval_id}").json()
            if now.get("executed_at"):
                return now
            raise errors.Conflict(f"execution report for approval {approval_id} refused: {exc.body}",
                                  status=409, body=exc.body) from None

    def get_prompt(self, name: str, label: str = "production", *, default: str | None = None,
                   run: str | None = None) -> Prompt:
        """The prompt version to use now, revalidated with ``If-None-Match`` (304 reuses the cache).

        The console splits a canary share by key, or per run when ``run`` (a
        trace id) is given; per-run answers are not cached. With ``default``
        given, a 404 (no such prompt or label, or no prompts API) returns
        ``Prompt(name, version=None, template=default, source="default")``.
        """
        cache_key = (name, label)
        params = {"label": label}
        if run:
            params["run"] = run
        with self._lock:
            cached = None if run else self._prompt_cache.get(cache_key)
        headers = {"If-None-Match": cached[0]} if cached else {}
        try:
            response = self._request("GET", f"/api/v1/prompts/{name}", params=params, headers=headers)
        except errors.NotFound:
            if default is None:
                raise
            return Prompt(name=name, version=None, template=default, label=label, source="default")
        if response.status_code == 304 and cached:
            return cached[1]
        prompt = _prompt_from_body(name, label, response.json())
        etag = response.headers.get("ETag")
        if etag and not run:
            with self._lock:
                self._prompt_cache[cache_key] = (etag, prompt)
        return prompt

    def guarded(self, action: str, risk: str, **options):
        """Guard a function (decorator) or a block (context manager) behind approval; see ``agents.client.guard``."""
        from agents.client.guard import Guard

        return Guard(self, action, risk, **options)

    # --- transport -------------------------------------------------------

    def _request(self, method: str, path: str, *, json=None, params=None, headers=None, timeout=None,
                 conflict_after_retry_ok: bool = False) -> httpx.Response:
        """Send; retry connection errors, 429, 502, 503, 504 (and 500 for GETs), honouring ``Retry-After``."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=json, params=params, headers=headers,
                                              timeout=timeout if timeout is not None else self.timeout)
            except httpx.TransportError as exc:
                problem, delay = f"{type(exc).__name__}: {exc}", self._backoff(attempt)
                response = None
            else:
                retryable = RETRY_STATUSES | ({500} if method == "GET" else set())  # GETs are safe to repeat
                if response.status_code not in retryable:
                    if response.status_code == 409 and attempt > 0 and conflict_after_retry_ok:
                        raise _AlreadyStoredByUs(_body_of(response))
                    return _check(response)
                problem = f"HTTP {response.status_code}"
                delay = _retry_after(response)
                delay = self._backoff(attempt) if delay is None else delay
            if attempt >= self.max_retries:
                status = response.status_code if response is not None else None
                raise errors.ConsoleUnavailable(
                    f"{method} {path}: {problem} after {attempt + 1} attempts", status=status,
                    body=_body_of(response) if response is not None else None)
            log.warning("console %s %s: %s; retrying in %.1fs", method, path, problem, delay)
            self._sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return base * (0.5 + random.random() / 2)


class _AlreadyStoredByUs(Exception):
    def __init__(self, body):
        self.body = body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), 300.0))


def _body_of(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.text


def _check(response: httpx.Response) -> httpx.Response:
    status = response.status_code
    if status < 400:
        return response
    body = _body_of(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    message = f"{response.request.method} {response.request.url.path}: HTTP {status}: {detail or body!s:.300}"
    if status == 400 or status == 422:
        errs = body.get("errors") if isinstance(body, dict) else None
        raise errors.BadRequest(message, status=status, body=body, errors=errs or _errors_from_detail(detail))
    kinds = {401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound, 409: errors.Conflict}
    raise kinds.get(status, errors.ConsoleError)(message, status=status, body=body)


def _errors_from_detail(detail) -> list[dict]:
    """``"Invalid request: field: message; other: message"`` (the console's 400 text) as field errors."""
    if not isinstance(detail, str) or not detail.startswith("Invalid request: "):
        return []
    found = []
    for part in detail.removeprefix("Invalid request: ").split("; "):
        field_name, sep, text = part.partition(": ")
        if sep:
            found.append({"field": field_name, "message": text})
    return found


def _prompt_ref(prompt) -> dict | None:
    """``{"name", "version"}`` for the approval, or None: a built-in fallback has no console version."""
    if prompt is None:
        prompt = current_prompt()
        if prompt is None:
            return None
    if isinstance(prompt, Prompt):
        prompt = {"name": prompt.name, "version": prompt.version}
    if not isinstance(prompt, dict):
        raise TypeError("prompt must be a Prompt, a dict with name and version, or None")
    if not prompt.get("name") or prompt.get("version") is None:
        return None
    return {"name": prompt["name"], "version": str(prompt["version"])}


def _prompt_from_body(name: str, label: str, body: dict) -> Prompt:
    template = body.get("template", "")
    messages = None
    if isinstance(template, list):
        messages = template
        template = "\n\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in messages)
    version = body.get("version")
    return Prompt(name=body.get("name", name), version=None if version is None else str(version),
                  template=template or "", label=body.get("label", label), messages=messages,
                  model=body.get("model") or "", raw=body)


def _jsonable(value):
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)

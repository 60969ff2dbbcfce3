"""Exceptions raised by the client. All derive from ``ConsoleError``."""


class ConsoleError(Exception):
    """The console answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


class ConsoleUnavailable(ConsoleError):
    """Connection errors, 429 or 503 persisted after every retry."""


class BadRequest(ConsoleError):
    """400: the console refused the request; ``errors`` lists ``{"field", "message"}``."""

    def __init__(self, message: str, *, status: int | None = 400, body=None, errors=None):
        super().__init__(message, status=status, body=body)
        self.errors = list(errors or [])

    @property
    def fields(self) -> dict[str, str]:
        return {e.get("field", "body"): e.get("message", "") for e in self.errors}


class Unauthorized(ConsoleError):
    """401: the agent key is missing, malformed, unknown or revoked."""


class Forbidden(ConsoleError):
    """403: the key may not do this (e.g. another agent's approval)."""


class NotFound(ConsoleError):
    """404."""


class Conflict(ConsoleError):
    """409: e.g. an execution already reported."""


class ApprovalError(ConsoleError):
    """Base of the outcomes that mean "do not run the action"."""

    def __init__(self, message: str, decision=None):
        super().__init__(message)
        self.decision = decision


class ApprovalRejected(ApprovalError):
    """A reviewer or a guardian rule rejected the action."""


class ApprovalExpired(ApprovalError):
    """Nobody decided in time (SLA breach or the request's ``timeout_s``)."""


class AgentPaused(ApprovalError):
    """The agent is paused: it may not act until someone resumes it."""


class AlreadyExecuted(ApprovalError):
    """The approval was already used: its execution is reported. A resumed or retried agent must not run it again."""


class ApprovalPending(ApprovalError):
    """The caller's wait ran out while the request was still pending."""

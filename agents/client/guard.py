"""``Guard``: run a function or a block only with approved arguments, then report once."""

import functools
import inspect
import logging

from agents.client import errors

log = logging.getLogger("agents.client")


class Guard:
    """Made by ``Console.guarded(action, risk, summary=..., resource=..., **request_approval options)``.

    As a decorator, the call's arguments (bound by name) are the action's
    arguments; the function runs with the approved ones, which may be a
    reviewer's edit, and its return value is reported as the result:

        @console.guarded("refund", risk="high", summary=lambda a: f"Refund {a['amount']} EUR")
        def refund(order_id: str, amount: int): ...

    As a context manager, pass ``arguments=``; the block gets the ``Decision``
    and may set ``decision.result`` before it ends:

        with console.guarded("deploy", risk="high", arguments={"service": "api"}) as d:
            d.result = deploy(**d.arguments)

    Either way a refusal raises (ApprovalRejected, ApprovalExpired, AgentPaused,
    ApprovalPending) before anything runs, and execution is reported exactly
    once: the result, or the exception's text (which is then re-raised).
    ``summary`` and ``resource`` may be callables taking the arguments dict.
    """

    def __init__(self, console, action: str, risk: str, *, arguments: dict | None = None, summary="",
                 resource=None, **options):
        self.console = console
        self.action = action
        self.risk = risk
        self.arguments = arguments
        self.summary = summary
        self.resource = resource
        self.options = options
        self._decision = None

    def ask(self, arguments: dict):
        """Request approval for ``arguments``; return the approved Decision or raise."""
        summary = self.summary(arguments) if callable(self.summary) else self.summary
        resource = self.resource(arguments) if callable(self.resource) else self.resource
        decision = self.console.request_approval(self.action, arguments, self.risk, summary=summary,
                                                 resource=resource, **self.options)
        return decision.raise_for_status()

    def report(self, decision, *, result=None, error: BaseException | None = None) -> None:
        try:
            if error is not None:
                self.console.report_execution(decision.id, error=f"{type(error).__name__}: {error}",
                                              digest=decision.digest)
            else:
                self.console.report_execution(decision.id, result=result, digest=decision.digest)
        except errors.ConsoleError:
            # The action already ran; failing the caller now would invite a second run.
            log.exception("could not report the execution of approval %s", decision.id)

    # --- decorator ---------------------------------------------------------

    def __call__(self, func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            decision = self.ask(dict(bound.arguments))
            try:
                result = func(**decision.arguments)
            except Exception as exc:
                self.report(decision, error=exc)
                raise
            self.report(decision, result=result)
            return result

        return wrapper

    # --- context manager ---------------------------------------------------

    def __enter__(self):
        if self.arguments is None:
            raise TypeError("guarded(...) as a context manager needs arguments=")
        self._decision = self.ask(self.arguments)
        self._decision.result = None
        return self._decision

    def __exit__(self, exc_type, exc, tb) -> bool:
        decision, self._decision = self._decision, None
        if exc is not None:
            self.report(decision, error=exc)
        else:
            self.report(decision, result=getattr(decision, "result", None))
        return False

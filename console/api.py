"""The versioned JSON API at ``/api/v1/`` (django-ninja, OpenAPI at ``openapi.json``).

Agents authenticate with ``Authorization: Bearer <agent key>``; people with
their session (and CSRF token). Each app adds its router in ``console.urls``.
"""

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer, SessionAuth

from agents import services as agent_services


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value, "" when there is none.

    The scheme is case-insensitive and spaces around the token are ignored. The one
    parser of agent keys: the API here and trace ingest (``traces.ingest``) both use it.
    """
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AgentKeyAuth(HttpBearer):
    """Bearer agent key. Sets ``request.agent`` and ``request.agent_key``."""

    openapi_scheme = "bearer"

    def __call__(self, request: HttpRequest):
        token = bearer_token(request.headers.get("Authorization", ""))
        return self.authenticate(request, token) if token else None  # a coroutine when authenticate is async

    def authenticate(self, request: HttpRequest, token: str):
        try:
            key = agent_services.authenticate_key(token)
        except agent_services.InvalidKey:
            return None
        request.agent_key = key
        request.agent = key.agent
        return key


class AsyncAgentKeyAuth(AgentKeyAuth):
    async def authenticate(self, request: HttpRequest, token: str):
        return await sync_to_async(AgentKeyAuth.authenticate)(self, request, token)


agent_auth = AgentKeyAuth()
async_agent_auth = AsyncAgentKeyAuth()
session_auth = SessionAuth(csrf=True)

class NulCharacter(ValueError):
    """A string of the JSON body holds U+0000, which PostgreSQL cannot store; ``field`` says where."""

    def __init__(self, field: str):
        self.field = field or "body"
        super().__init__(f"{self.field}: must not contain NUL (U+0000) characters")


def _refuse_nul(value, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise NulCharacter(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise NulCharacter(path)
            _refuse_nul(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{path}.{index}" if path else str(index))


class CheckedParser(Parser):
    """JSON bodies as usual, refusing U+0000 anywhere in them (ninja answers 400; see ``http_error``)."""

    def parse_body(self, request):
        data = super().parse_body(request)
        _refuse_nul(data)
        return data


api = NinjaAPI(
    parser=CheckedParser(),
    title="Agent Ops Console API",
    version="1",
    description=(
        "Agents ask permission for risky actions, wait for the decision, report execution, "
        "fetch prompts and read their runs with `Authorization: Bearer <agent key>`. "
        "Reviewers decide with their browser session. Traces are ingested by OTLP/HTTP at `/v1/traces`.\n\n"
        "[Back to the console](/)"
    ),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _field_of(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "payload")]
    return ".".join(parts) or "body"


@api.exception_handler(ValidationError)
def validation_failed(request, exc: ValidationError):
    errors = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return api.create_response(request, {"detail": f"Invalid request: {summary}", "errors": errors}, status=400)


@api.exception_handler(AuthenticationError)
def unauthenticated(request, exc):
    response = api.create_response(
        request, {"detail": "Missing, malformed, unknown or revoked credentials."}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


def _errors_of(message: str) -> list[dict]:
    """``errors`` for a hand-raised 400 worded like the validation handler's ("Invalid request: f: why; ...")."""
    text = message.removeprefix("Invalid request:").strip()
    errors = []
    for part in text.split("; "):
        field, sep, why = part.partition(": ")
        if sep and field and " " not in field.strip():
            errors.append({"field": field.strip(), "message": why.strip()})
    return errors or [{"field": "body", "message": text or message}]


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, NulCharacter):  # ninja wraps a parser's error as "Cannot parse request body"
        exc = HttpError(400, f"Invalid request: {exc.__cause__}")
    body = {"detail": exc.message}
    if exc.status_code == 400:  # every rejection names the bad field, however it was raised
        body["errors"] = _errors_of(str(exc.message))
    return api.create_response(request, body, status=exc.status_code)

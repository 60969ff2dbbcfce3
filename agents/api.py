from django.http import HttpResponse, JsonResponse
from ninja import Router, Schema
from ninja.errors import HttpError

from agents import services as prompt_services
from console.api import agent_auth, session_auth
from console.roles import STAFF_ROLES, has_role

router = Router(tags=["agents"])


class WhoAmI(Schema):
    agent: str
    key_prefix: str
    paused: bool


@router.get("/whoami", auth=agent_auth, response=WhoAmI, summary="The agent this key belongs to")
def whoami(request):
    """Check a key: which agent it acts for, and whether that agent is paused."""
    return {"agent": request.agent.name, "key_prefix": request.agent_key.prefix, "paused": request.agent.is_paused}


# --- prompts ---------------------------------------------------------------------------------


class PromptOut(Schema):
    name: str
    version: int
    label: str
    kind: str
    template: str | list
    variables: list[str]
    model: str
    parameters: dict
    commit_message: str
    created_at: str


class Detail(Schema):
    detail: str


def _prompt_caller(request) -> str:
    """Who is asking, for the canary bucket: the key prefix, or the signed-in user."""
    key = getattr(request, "agent_key", None)
    if key is not None:
        return f"key:{key.prefix}"
    return f"user:{request.user.pk}"


@router.get("/prompts/{name}", auth=[agent_auth, session_auth],
            response={200: PromptOut, 304: None, 403: Detail, 404: Detail},
            summary="The prompt version to use now (honours the canary share)")
def get_prompt(request, name: str, label: str = "production", run: str = ""):
    """The version an agent should use now under ``label`` (default ``production``).

    When a ``canary`` label has a share, asking for ``production`` returns the canary's version
    to that share of callers, chosen deterministically from the caller's key (or from ``run``,
    a trace id, to split per run instead). Send the ``ETag`` back in ``If-None-Match`` to get
    ``304 Not Modified`` while the version you would get is unchanged.
    """
    if getattr(request, "agent_key", None) is None and not has_role(request.user, *STAFF_ROLES):
        raise HttpError(403, "Your role may not read prompts.")
    caller = f"run:{run}" if run else _prompt_caller(request)
    try:
        resolved = prompt_services.resolve_prompt(name=name, label=label, caller=caller)
    except (prompt_services.UnknownPrompt, prompt_services.UnknownLabel) as exc:
        raise HttpError(404, str(exc)) from exc
    etag = resolved.etag
    if etag in _etags(request.headers.get("If-None-Match", "")):
        response = HttpResponse(status=304)
        response["ETag"] = etag
        return response
    version = resolved.version
    body = {
        "name": resolved.prompt.name, "version": version.number, "label": resolved.label, "kind": version.kind,
        "template": version.messages if version.messages is not None else version.template,
        "variables": version.variables, "model": version.model, "parameters": version.parameters,
        "commit_message": version.commit_message, "created_at": version.created_at.isoformat(),
    }
    response = JsonResponse(body)
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    response["Vary"] = "Authorization, Cookie"
    return response


def _etags(header: str) -> set[str]:
    tags = {tag.strip() for tag in header.split(",") if tag.strip()}
    return {tag[2:] if tag.startswith("W/") else tag for tag in tags}

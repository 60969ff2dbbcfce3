from ninja import Router, Schema

from console.api import agent_auth

router = Router(tags=["agents"])


class WhoAmI(Schema):
    agent: str
    key_prefix: str
    paused: bool


@router.get("/whoami", auth=agent_auth, response=WhoAmI, summary="The agent this key belongs to")
def whoami(request):
    """Check a key: which agent it acts for, and whether that agent is paused."""
    return {"agent": request.agent.name, "key_prefix": request.agent_key.prefix, "paused": request.agent.is_paused}

"""Every state change of the agents app. ``from agents import services``."""

from agents.services.keys import (  # noqa: F401
    InvalidKey,
    authenticate_key,
    issue_key,
    revoke_key,
)
from agents.services.registry import (  # noqa: F401
    AgentNameTaken,
    create_agent,
    pause_agent,
    resume_agent,
)

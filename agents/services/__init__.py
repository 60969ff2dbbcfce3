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
from agents.prompts.feedback import (  # noqa: F401, E402
    NoPromptVersion,
    record_feedback,
    record_rating,
)
from agents.prompts.labels import (  # noqa: F401, E402
    LabelNotAllowed,
    NothingToRollBack,
    UnknownLabel,
    UnknownPrompt,
    move_label,
    promote_canary,
    remove_label,
    resolve as resolve_prompt,
    rollback_label,
)
from agents.prompts.versions import (  # noqa: F401, E402
    InvalidTemplate,
    PromptNameTaken,
    create_prompt,
    create_version,
)

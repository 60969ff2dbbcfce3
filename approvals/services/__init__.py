"""Every state change of the approvals app. ``from approvals import services``."""

from approvals.services.create import (  # noqa: F401
    DEFAULT_QUEUE,
    NewRequest,
    TooManyPending,
    create_request,
    default_queue,
)
from approvals.services.decide import (  # noqa: F401
    CLAIM_MINUTES,
    AlreadyClaimed,
    AlreadyDecided,
    APPROVING,
    AlreadyExecuted,
    ApprovalError,
    ArgumentsChanged,
    DigestMismatch,
    EditAfterApproval,
    InvalidDecision,
    NotApproved,
    NotClaimant,
    NotReviewer,
    SameReviewer,
    approvals_of,
    claim_request,
    decide_request,
    expire_claims,
    expire_overdue,
    expire_pending_of_agents,
    get_request_for,
    may_decide,
    proposed_arguments,
    record_execution,
    release_request,
)
from approvals.services.escalate import (  # noqa: F401
    due_steps,
    fire_due_escalations,
    handle_breaches,
    reapply_matrix,
    set_queue_members,
    set_sla_policy,
    update_matrix,
    validate_levels,
)
from approvals.services.notify import deliver_due, mark_read, sign  # noqa: F401
from approvals.services.rules import delete_rule, dry_run, first_matching_rule, save_rule  # noqa: F401
from approvals.services.admin import create_queue, update_queue  # noqa: F401

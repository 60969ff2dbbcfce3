"""Labels: moving them (Admins and the canary guard only), rolling back, and resolving one for a caller."""

import hashlib
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from agents.models import LabelMove, LabelName, Prompt, PromptLabel, PromptVersion
from agents.prompts import webhooks
from console import audit
from console.roles import Role, has_role

DEFAULT_CANARY_SHARE = 10


class UnknownPrompt(LookupError):
    def __init__(self, name: str):
        super().__init__(f"No prompt named {name!r}.")


class UnknownLabel(LookupError):
    def __init__(self, name: str, label: str):
        super().__init__(f"Prompt {name!r} has no {label!r} label.")


class LabelNotAllowed(PermissionError):
    """Only Admins (and the console's own guard) move labels; agent keys never do."""


class NothingToRollBack(Exception):
    pass


def _check_actor(actor) -> str:
    if isinstance(actor, str) and actor.startswith("system:"):
        return actor
    if getattr(actor, "is_authenticated", False) and has_role(actor, Role.ADMIN):
        return f"user:{actor.get_username()}"
    raise LabelNotAllowed("Only an Admin may move prompt labels.")


def move_label(*, prompt: Prompt, label: str, version: PromptVersion, actor, share: int | None = None,
               reason: str = "", is_rollback: bool = False, at=None) -> LabelMove:
    """Point ``label`` at ``version``; history row, audit entry and webhook outbox rows in one transaction.

    Raises LabelNotAllowed unless ``actor`` is an Admin or a ``system:`` actor. A move to where
    the label already points (same share) changes nothing and returns the last move.
    """
    actor_label = _check_actor(actor)
    if label not in LabelName.values:
        raise ValueError(f"Unknown label {label!r}; use one of {', '.join(LabelName.values)}.")
    if version.prompt_id != prompt.pk:
        raise ValueError("That version belongs to another prompt.")
    if label == LabelName.CANARY:
        share = DEFAULT_CANARY_SHARE if share is None else int(share)
        if not 0 <= share <= 100:
            raise ValueError("A canary share is a percentage from 0 to 100.")
    else:
        share = 100
    now = at or timezone.now()
    with transaction.atomic():
        current = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
        if current and current.version_id == version.pk and current.share == share:
            return LabelMove.objects.filter(prompt=prompt, label=label).first()
        from_version = current.version if current else None
        if current:
            current.version, current.share, current.updated_at, current.updated_by = version, share, now, actor_label
            current.save(update_fields=["version", "share", "updated_at", "updated_by"])
        else:
            PromptLabel.objects.create(prompt=prompt, name=label, version=version, share=share, updated_at=now,
                                       updated_by=actor_label)
        move = LabelMove.objects.create(prompt=prompt, label=label, from_version=from_version, to_version=version,
                                        share=share, actor=actor_label, reason=reason[:500],
                                        is_rollback=is_rollback, created_at=now)
        audit.record(actor=actor, action="prompt.label_rolled_back" if is_rollback else "prompt.label_moved",
                     target=prompt,
                     before={"label": label, "version": from_version.number if from_version else None},
                     after={"label": label, "version": version.number, "share": share, "reason": reason})
        webhooks.enqueue_for_move(move)
    return move


def remove_label(*, prompt: Prompt, label: str, actor, reason: str = "", is_rollback: bool = False,
                 only_if_version: PromptVersion | None = None, at=None) -> LabelMove | None:
    """Remove ``label`` (never ``production``). None if it was not there (or had moved on). Idempotent."""
    actor_label = _check_actor(actor)
    if label == LabelName.PRODUCTION:
        raise ValueError("The production label cannot be removed; move it instead.")
    with transaction.atomic():
        rows = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label)
        if only_if_version is not None:
            rows = rows.filter(version=only_if_version)
        current = rows.select_related("version").first()
        if current is None:
            return None
        from_version = current.version
        current.delete()
        move = LabelMove.objects.create(prompt=prompt, label=label, from_version=from_version, to_version=None,
                                        share=0, actor=actor_label, reason=reason[:500], is_rollback=is_rollback,
                                        created_at=at or timezone.now())
        audit.record(actor=actor, action="prompt.label_rolled_back" if is_rollback else "prompt.label_removed",
                     target=prompt, before={"label": label, "version": from_version.number},
                     after={"label": label, "version": None, "reason": reason})
        webhooks.enqueue_for_move(move)
    return move


def rollback_target(prompt: Prompt, label: str) -> PromptVersion | None:
    """The version ``label`` pointed at before its current version (None: the label would be removed)."""
    last = LabelMove.objects.filter(prompt=prompt, label=label).select_related("from_version").first()
    return last.from_version if last else None


def rollback_label(*, prompt: Prompt, label: str, actor, reason: str = "") -> LabelMove:
    """One-click rollback: point ``label`` back where it was before its last move (or remove a canary)."""
    current = PromptLabel.objects.filter(prompt=prompt, name=label).first()
    if current is None:
        raise NothingToRollBack(f"The {label} label is not set.")
    target = rollback_target(prompt, label)
    if target is None or target.pk == current.version_id:
        if label == LabelName.PRODUCTION:
            raise NothingToRollBack("Production has no earlier version to roll back to.")
        return remove_label(prompt=prompt, label=label, actor=actor, reason=reason or "rollback", is_rollback=True)
    return move_label(prompt=prompt, label=label, version=target, actor=actor, reason=reason or "rollback",
                      is_rollback=True, share=current.share if label == LabelName.CANARY else None)


def promote_canary(*, prompt: Prompt, actor) -> LabelMove:
    """A human promotes: production moves to the canary's version and the canary label is removed."""
    canary = PromptLabel.objects.filter(prompt=prompt, name=LabelName.CANARY).select_related("version").first()
    if canary is None:
        raise NothingToRollBack("There is no canary to promote.")
    with transaction.atomic():
        move = move_label(prompt=prompt, label=LabelName.PRODUCTION, version=canary.version, actor=actor,
                          reason=f"promoted canary v{canary.version.number}")
        remove_label(prompt=prompt, label=LabelName.CANARY, actor=actor, reason="promoted to production")
        from agents.models import CanaryVerdict

        CanaryVerdict.objects.filter(version=canary.version, resolved_at__isnull=True).update(
            resolved_at=timezone.now())
    return move


# --- resolving -------------------------------------------------------------------------------


def bucket_of(caller: str, prompt_name: str) -> int:
    """A stable bucket 0-99 for (caller, prompt): the same caller always lands in the same bucket."""
    digest = hashlib.sha256(f"{caller}\x00{prompt_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class Resolved:
    prompt: Prompt
    version: PromptVersion
    label: str  # the label that supplied the version (canary when the caller fell in its share)
    bucket: int | None

    @property
    def etag(self) -> str:
        return f'"p{self.prompt.pk}-v{self.version.pk}-{self.label}"'


def resolve(*, name: str, label: str = LabelName.PRODUCTION, caller: str) -> Resolved:
    """The version ``caller`` should use now. Asking for production honours the canary's share.

    Raises UnknownPrompt or UnknownLabel.
    """
    prompt = Prompt.objects.filter(name=name).first()
    if prompt is None:
        raise UnknownPrompt(name)
    labels = {row.name: row for row in PromptLabel.objects.filter(prompt=prompt).select_related("version")}
    wanted = labels.get(label)
    if wanted is None:
        raise UnknownLabel(name, label)
    if label == LabelName.PRODUCTION:
        canary = labels.get(LabelName.CANARY)
        if canary and canary.share > 0:
            bucket = bucket_of(caller, name)
            if bucket < canary.share:
                return Resolved(prompt, canary.version, LabelName.CANARY, bucket)
            return Resolved(prompt, wanted.version, label, bucket)
    return Resolved(prompt, wanted.version, label, None)

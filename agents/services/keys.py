import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentKey
from console import audit

KEY_PREFIX = "aoc_"
LAST_USED_RESOLUTION = timedelta(seconds=60)  # at most one write per key per minute


class InvalidKey(Exception):
    pass


def hash_key(plain: str) -> str:
    # Keys are 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(plain.encode()).hexdigest()


def issue_key(*, agent: Agent, actor, name: str = "") -> tuple[AgentKey, str]:
    """Create a key and return it with the plain text, which is never stored."""
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = AgentKey.objects.create(
            agent=agent, name=name[:100], prefix=plain[:12], hashed=hash_key(plain),
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit.record(actor=actor, action="agent_key.issued", target=key,
                     after={"agent": agent.name, "prefix": key.prefix, "name": key.name})
    return key, plain


def revoke_key(*, key_id: int, actor) -> AgentKey:
    """Revoke a key; it fails at once on its next use. Idempotent."""
    with transaction.atomic():
        key = AgentKey.objects.select_for_update().select_related("agent").get(pk=key_id)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit.record(actor=actor, action="agent_key.revoked", target=key,
                         after={"agent": key.agent.name, "prefix": key.prefix})
    return key


def authenticate_key(plain: str) -> AgentKey:
    """The active key for ``plain`` with its agent loaded; raises InvalidKey.

    Revocation takes effect at once: every call reads the key row.
    """
    if not plain or not plain.startswith(KEY_PREFIX) or len(plain) > 200:
        raise InvalidKey("malformed key")
    key = (
        AgentKey.objects.select_related("agent")
        .filter(hashed=hash_key(plain), revoked_at__isnull=True)
        .first()
    )
    if key is None:
        raise InvalidKey("unknown or revoked key")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        AgentKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key

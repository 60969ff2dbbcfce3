import hashlib
import secrets
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent, AgentKey
from console import audit
from console.db import binding_cursor

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
    key = _active_key(hash_key(plain))
    if key is None:
        raise InvalidKey("unknown or revoked key")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        AgentKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def _columns(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


_KEY_LOOKUP: tuple | None = None


def _key_lookup() -> tuple:
    """The key-with-agent query, built once: the ORM's per-call compiling was a tenth of ingest's CPU."""
    global _KEY_LOOKUP
    if _KEY_LOOKUP is None:
        key_cols, agent_cols = _columns(AgentKey), _columns(Agent)
        qn = connection.ops.quote_name
        sql = (f"SELECT {', '.join('k.' + qn(c) for c in key_cols)}, {', '.join('a.' + qn(c) for c in agent_cols)} "
               f"FROM {qn(AgentKey._meta.db_table)} k JOIN {qn(Agent._meta.db_table)} a "
               f"ON a.{qn(Agent._meta.pk.column)} = k.{qn(AgentKey._meta.get_field('agent').column)} "
               f"WHERE k.{qn(AgentKey._meta.get_field('hashed').column)} = %s "
               f"AND k.{qn(AgentKey._meta.get_field('revoked_at').column)} IS NULL")  # hashed is unique
        _KEY_LOOKUP = (sql, key_cols, agent_cols)
    return _KEY_LOOKUP


def _active_key(hashed: str) -> AgentKey | None:
    """The unrevoked key with this hash and its agent, read now (never cached: revocation is immediate)."""
    if connection.vendor != "postgresql":  # the ORM converts other databases' values (SQLite's datetimes)
        return AgentKey.objects.select_related("agent").filter(hashed=hashed, revoked_at__isnull=True).first()
    sql, key_cols, agent_cols = _key_lookup()
    with binding_cursor() as cursor:
        cursor.execute(sql, [hashed], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    key = AgentKey.from_db(connection.alias, key_cols, row[:len(key_cols)])
    key.agent = Agent.from_db(connection.alias, agent_cols, row[len(key_cols):])
    return key

"""The audit log: append-only, hash-chained.

Each entry's hash covers its own fields and the previous entry's hash, so an
edited, removed or reordered row breaks the chain at that point.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from console.models import AuditEntry

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x41756469  # "Audi": serialises appends on PostgreSQL


def _jsonable(value):
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True))


def _actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if getattr(actor, "is_authenticated", False):
        return f"user:{actor.get_username()}"
    name = getattr(actor, "name", None)
    if name:
        return f"agent:{name}"
    return str(actor)


def entry_hash(*, prev_hash: str, at: datetime, actor: str, action: str, target_type: str,
               target_id: str, target_repr: str, before, after) -> str:
    body = json.dumps(
        {
            "prev": prev_hash,
            "at": at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": [target_type, target_id, target_repr],
            "before": before,
            "after": after,
        },
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def lock_chain() -> None:
    """Hold the append lock until the surrounding transaction ends (re-entrant).

    Taken before ``record`` by a caller whose decision to append depends on earlier
    entries, so two concurrent callers cannot both decide on the same view of the log.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def record(*, actor, action: str, target=None, target_type: str = "", target_id="",
           before=None, after=None, at: datetime | None = None) -> AuditEntry:
    """Append one entry. Joins the caller's transaction: rolled back with it.

    Appends are serialised (an advisory lock on PostgreSQL, the write lock on
    SQLite) so the chain never forks.
    """
    if target is not None:
        target_type = target_type or f"{target._meta.app_label}.{target._meta.model_name}"
        target_id = target_id or target.pk
        target_repr = str(target)[:300]
    else:
        target_repr = ""
    actor_label = _actor_label(actor)
    actor_user = actor if getattr(actor, "is_authenticated", False) else None
    before, after = _jsonable(before), _jsonable(after)
    at = at or timezone.now()
    with transaction.atomic():
        lock_chain()
        last = AuditEntry.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = last or GENESIS
        entry = AuditEntry(
            at=at,
            actor=actor_label[:200],
            actor_user=actor_user,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            target_repr=target_repr,
            before=before,
            after=after,
            prev_hash=prev,
        )
        entry.hash = entry_hash(
            prev_hash=prev, at=at, actor=entry.actor, action=action, target_type=target_type,
            target_id=entry.target_id, target_repr=target_repr, before=before, after=after,
        )
        entry.save()
    return entry


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(batch: int = 5000) -> ChainReport:
    """Recompute every hash in id order; report the first entry that does not fit."""
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = list(AuditEntry.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not rows:
            return ChainReport(checked=checked)
        for row in rows:
            if row.prev_hash != prev:
                return ChainReport(checked, row.pk, "its previous-hash does not match the entry before it "
                                                    "(an entry was removed or inserted)")
            expected = entry_hash(
                prev_hash=row.prev_hash, at=row.at, actor=row.actor, action=row.action,
                target_type=row.target_type, target_id=row.target_id, target_repr=row.target_repr,
                before=row.before, after=row.after,
            )
            if expected != row.hash:
                return ChainReport(checked, row.pk, "its content does not match its hash (it was edited)")
            prev = row.hash
            checked += 1
            last_id = row.pk

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from console import audit
from console.models import AuditEntry
from tests import factories

pytestmark = pytest.mark.django_db


def _tamper(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")  # bypass the guard trigger
        cursor.execute(sql, params)


def test_each_entry_chains_to_the_one_before():
    first = audit.record(actor="system", action="test.one", target_type="x", target_id=1, after={"a": 1})
    second = audit.record(actor="system", action="test.two", target_type="x", target_id=2)
    assert first.prev_hash == audit.GENESIS
    assert second.prev_hash == first.hash
    assert audit.verify_chain().ok


def test_agent_pause_is_audited_with_actor_and_before_after(operator):
    from agents import services

    agent = factories.make_agent("pausable")
    services.pause_agent(agent_id=agent.pk, actor=operator, reason="looping")
    entry = AuditEntry.objects.filter(action="agent.paused").get()
    assert entry.actor == "user:otto"
    assert entry.actor_user == operator
    assert entry.before == {"paused": False}
    assert entry.after == {"paused": True, "reason": "looping"}
    assert entry.target_id == str(agent.pk)


def test_edited_entry_is_detected_by_verify_audit(capsys):
    audit.record(actor="system", action="policy.changed", target_type="x", target_id=1, after={"limit": 500})
    victim = audit.record(actor="system", action="policy.changed", target_type="x", target_id=1,
                          after={"limit": 900})
    audit.record(actor="system", action="policy.changed", target_type="x", target_id=1, after={"limit": 100})
    call_command("verify_audit")
    assert "3 entries verified" in capsys.readouterr().out

    _tamper("UPDATE console_auditentry SET after = %s WHERE id = %s", ['{"limit": 5}', victim.pk])
    with pytest.raises(CommandError) as exc:
        call_command("verify_audit")
    assert f"BROKEN at entry #{victim.pk}" in str(exc.value)
    assert "edited" in str(exc.value)


def test_removed_entry_is_detected():
    audit.record(actor="system", action="a", target_type="x", target_id=1)
    middle = audit.record(actor="system", action="b", target_type="x", target_id=2)
    last = audit.record(actor="system", action="c", target_type="x", target_id=3)
    _tamper("DELETE FROM console_auditentry WHERE id = %s", [middle.pk])
    report = audit.verify_chain()
    assert not report.ok
    assert report.broken_at == last.pk


def test_model_refuses_updates_and_deletes():
    entry = audit.record(actor="system", action="a", target_type="x", target_id=1)
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


@pytest.mark.postgres
def test_postgres_trigger_refuses_raw_update():
    from django.db import DatabaseError

    entry = audit.record(actor="system", action="a", target_type="x", target_id=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE console_auditentry SET action = 'b' WHERE id = %s", [entry.pk])

"""The demo's four-eyes story with the real fleet over HTTP: data-ops asks to run a critical migration in
production, the demo rules want two reviewers, the first edits, the second approves, and the agent runs
exactly the edited migration once (through the client's guard) and reports it."""

from approvals.models import ApprovalRequest, Status
from approvals.services import decide_request
from console.models import AuditEntry
from tests.fleet_helpers import demo_fleet, seed_demo, wait_until


def test_a_prod_migration_needs_two_reviewers_and_runs_the_edited_sql_once(asgi_server):
    from traces.models import Span

    reviewer, admin = seed_demo()
    with demo_fleet(asgi_server.url, ["data-ops"], rate=8, seed=3, mischief=False):
        asked = wait_until(lambda: ApprovalRequest.objects.filter(
            action="run_migration", status=Status.PENDING, arguments__environment="prod").order_by("pk").first())
        assert asked is not None, "data-ops never asked to migrate prod"
        assert asked.risk == "critical" and asked.required_approvals == 2 and asked.matched_rule.name == "prod-migrations"

        edited = {**asked.arguments, "sql": asked.arguments["sql"].rstrip(";") + " /* reviewed: off-peak */;"}
        decide_request(request_id=asked.pk, reviewer=reviewer, verdict="modify", reason="run it off-peak",
                       arguments=edited)
        assert ApprovalRequest.objects.get(pk=asked.pk).status == Status.PENDING  # one of two: nothing runs
        decide_request(request_id=asked.pk, reviewer=admin, verdict="approve", reason="agreed")
        executed = wait_until(lambda: ApprovalRequest.objects.filter(pk=asked.pk, executed_at__isnull=False).first())
    assert executed is not None, "the approved migration was never reported as run"
    assert executed.final_arguments == edited and executed.execution_error == ""
    assert AuditEntry.objects.get(action="approval.executed", target_id=str(asked.pk)).after["reported_digest"] \
        == executed.final_digest
    # Exactly one run of the migration in that trace, with the edited SQL.
    runs = list(Span.objects.filter(run__trace_id=asked.trace_id, name="execute_tool run_migration"))
    assert len(runs) == 1 and runs[0].tool_arguments == edited

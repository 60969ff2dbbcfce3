"""Gauges and totals read from the database at scrape time (see console.metrics).

Grouped counts over indexed columns only; pending requests and running runs are
small sets, and the totals read the ledgers the engine writes anyway.
"""

from django.apps import apps
from django.db.models import Count
from django.utils import timezone


def runs_in_flight():
    Run = apps.get_model("traces", "Run")
    rows = Run.objects.filter(status="running").values_list("agent__name").annotate(n=Count("id"))
    yield ("console_runs_in_flight", "Runs not finished yet, by agent", ["agent"],
           [((agent,), n) for agent, n in rows])


def approval_queues():
    ApprovalRequest = apps.get_model("approvals", "ApprovalRequest")
    pending = ApprovalRequest.objects.filter(status="pending")
    depth = pending.values_list("queue__name", "risk").annotate(n=Count("id"))
    yield ("console_approval_queue_depth", "Pending approval requests, by queue and risk", ["queue", "risk"],
           [((queue or "", risk), n) for queue, risk, n in depth])
    overdue = pending.filter(due_at__lt=timezone.now()).values_list("queue__name").annotate(n=Count("id"))
    yield ("console_approval_overdue", "Pending requests past their SLA due time, by queue", ["queue"],
           [((queue or "",), n) for queue, n in overdue])
    breaches = (ApprovalRequest.objects.filter(breached_at__isnull=False)
                .values_list("queue__name").annotate(n=Count("id")))
    yield ("console_sla_breaches", "Requests that breached their SLA, by queue", ["queue"],
           [((queue or "",), n) for queue, n in breaches], "counter")


def escalations_and_notifications():
    EscalationFiring = apps.get_model("approvals", "EscalationFiring")
    Delivery = apps.get_model("approvals", "Delivery")
    fired = EscalationFiring.objects.values_list("request__queue__name").annotate(n=Count("id"))
    yield ("console_escalations_fired", "Escalation levels fired, by queue", ["queue"],
           [((queue or "",), n) for queue, n in fired], "counter")
    failed = Delivery.objects.filter(status="failed").values_list("channel").annotate(n=Count("id"))
    yield ("console_notifications_failed", "Notifications that failed for good, by channel", ["channel"],
           [((channel,), n) for channel, n in failed], "counter")


def incidents_open():
    Incident = apps.get_model("traces", "Incident")
    rows = Incident.objects.exclude(status="resolved").values_list("kind", "agent__name").annotate(n=Count("id"))
    yield ("console_incidents_open", "Incidents not resolved yet, by detector and agent", ["detector", "agent"],
           [((kind, agent), n) for kind, agent, n in rows])


SOURCES = [runs_in_flight, approval_queues, escalations_and_notifications, incidents_open]

"""Periodic jobs of the agents app (plain idempotent functions taking ``now``)."""

from datetime import datetime

from agents.prompts import canary, webhooks


def guard_canaries(*, now: datetime) -> dict:
    """Roll back canaries significantly worse than production; suggest promoting better ones."""
    return canary.guard_canaries(now=now)


def deliver_prompt_webhooks(*, now: datetime) -> int:
    """Send due label-move webhooks (retries with backoff, every attempt recorded)."""
    return webhooks.deliver_due(now=now)

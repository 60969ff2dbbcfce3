"""Demo data for ``manage.py demo``: the fleet's agents and their keys.

The fleet itself (issue: client and demo fleet) talks to the console only over
HTTP with the keys made here.
"""

from agents import services
from agents.models import Agent

DEMO_AGENTS = [
    ("support-bot", "Customer support: answers tickets, issues refunds"),
    ("data-ops", "Runs SQL migrations and data fixes"),
    ("deploy-bot", "Deploys services to staging and prod"),
    ("researcher", "Research assistant making many LLM calls"),
]


def seed(stdout) -> None:
    for name, description in DEMO_AGENTS:
        if not Agent.objects.filter(name=name).exists():
            services.create_agent(name=name, description=description, actor="system:demo")
    stdout.write(f"Demo agents: {', '.join(n for n, _ in DEMO_AGENTS)}")


def start_fleet(base_url: str, stdout) -> None:
    """Start the simulated agents against ``base_url`` (added with the client)."""
    stdout.write("Demo fleet: not part of this build yet.\n")

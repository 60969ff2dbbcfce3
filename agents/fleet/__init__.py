"""The demo fleet: simulated agents that use the console only through ``agents.client``.

    from agents.fleet import Fleet
    fleet = Fleet("http://127.0.0.1:8000", {"support-bot": "aoc_...", "researcher": "aoc_..."}, rate=1.0)
    fleet.start(); ...; fleet.stop()
"""

from agents.fleet.agents import ALL as AGENT_TYPES  # noqa: F401
from agents.fleet.fleet import Fleet  # noqa: F401

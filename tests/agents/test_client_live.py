"""The client against the real console served by uvicorn (``asgi_server``), never a mock."""

import pytest

from agents import services as agent_services
from agents.client import Console, Unauthorized
from tests import factories


@pytest.fixture
def live_agent(asgi_server):
    agent = factories.make_agent("support-bot")
    _key, plain = factories.make_key(agent)
    console = Console(asgi_server.url, plain, max_retries=1)
    console.agent = agent
    yield console
    console.close()


def test_whoami_names_the_keys_agent(live_agent):
    me = live_agent.whoami()
    assert me["agent"] == "support-bot" and me["paused"] is False
    assert live_agent.key.startswith(me["key_prefix"])


def test_whoami_shows_a_paused_agent(live_agent):
    agent_services.pause_agent(agent_id=live_agent.agent.pk, actor="system:test", reason="loop")
    assert live_agent.whoami()["paused"] is True


def test_an_unknown_key_is_refused(asgi_server):
    with Console(asgi_server.url, "aoc_not-a-real-key", max_retries=0) as console:
        with pytest.raises(Unauthorized):
            console.whoami()


def test_a_revoked_key_is_refused_at_once(live_agent):
    key = live_agent.agent.keys.get()
    agent_services.revoke_key(key_id=key.pk, actor="system:test")
    with pytest.raises(Unauthorized):
        live_agent.whoami()

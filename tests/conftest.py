from datetime import UTC, datetime

import pytest
from django.test import Client

from console.roles import Role
from tests import factories


@pytest.fixture
def fixed_now():
    return datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def reviewer(db):
    return factories.make_user(Role.REVIEWER, username="rita")


@pytest.fixture
def operator(db):
    return factories.make_user(Role.OPERATOR, username="otto")


@pytest.fixture
def admin_user(db):
    return factories.make_user(Role.ADMIN, username="ada")


@pytest.fixture
def nobody(db):
    """Logged in, but holding no role."""
    return factories.make_user(None, username="nora")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def reviewer_client(reviewer):
    return _client_for(reviewer)


@pytest.fixture
def operator_client(operator):
    return _client_for(operator)


@pytest.fixture
def admin_client_(admin_user):
    return _client_for(admin_user)


@pytest.fixture
def superuser_client(db):
    """A Django superuser (no console role) logged in: (client, user), for the Django admin site."""
    user = factories.make_user(None, username="root", is_staff=True, is_superuser=True)
    return _client_for(user), user


@pytest.fixture
def clients_by_role(reviewer, operator, admin_user, nobody):
    return {
        "anonymous": Client(),
        "none": _client_for(nobody),
        "reviewer": _client_for(reviewer),
        "operator": _client_for(operator),
        "admin": _client_for(admin_user),
    }


@pytest.fixture
def agent(db):
    return factories.make_agent("billing-bot")


@pytest.fixture
def agent_key(agent):
    """The plain bearer key of ``agent``."""
    _key, plain = factories.make_key(agent)
    return plain


@pytest.fixture
def agent_headers(agent_key):
    return {"HTTP_AUTHORIZATION": f"Bearer {agent_key}"}


@pytest.fixture
def fresh_channel_layer():
    """A channel layer of this test's own: the process-wide one may still be held by
    a receive() on the loop of an earlier test's server, which channels_redis refuses."""
    from channels.layers import channel_layers, get_channel_layer

    channel_layers.backends.clear()
    yield get_channel_layer()
    channel_layers.backends.clear()

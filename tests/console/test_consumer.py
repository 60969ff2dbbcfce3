"""The live consumer: permission on connect, and a clean refusal when the channel layer is down."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from django.db import connections

from console.consumers import LiveConsumer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_the_consumers_database_connection():
    """Close the connection the consumer's permission check opened in asgiref's sync thread.

    A served consumer closes it itself (``database_sync_to_async`` runs ``close_old_connections``
    after each call), but ``channels.testing`` turns ``close_old_connections`` into a no-op while a
    communicator sends or receives, so that it cannot close the test's own connection. The sync
    thread's connection then stays open to the end of the session and PostgreSQL refuses to drop the
    test database ("is being accessed by other users").
    """
    yield
    await sync_to_async(connections.close_all)()  # thread-sensitive: the same thread the consumer used


def _communicator(user, topic="dashboard"):
    app = LiveConsumer.as_asgi()
    communicator = WebsocketCommunicator(app, f"/ws/live/{topic}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"topic": topic}}
    return communicator


async def test_a_reviewer_may_join_the_dashboard_and_nobody_else(reviewer, nobody):
    ok = _communicator(reviewer)
    connected, _ = await ok.connect()
    assert connected
    await ok.disconnect()
    refused = _communicator(nobody)
    connected, code = await refused.connect()
    assert not connected and code == 4403


async def test_a_broken_channel_layer_refuses_the_socket_instead_of_a_500(reviewer, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    channel_layers.backends.clear()
    try:
        communicator = _communicator(reviewer)
        connected, code = await communicator.connect(timeout=10)
    finally:
        channel_layers.backends.clear()
    assert not connected and code == 1011


async def test_only_who_sees_every_queue_may_join_the_all_queues_topic(reviewer, operator):
    """``approvals`` carries a signal for every request of every queue; a reviewer sees only their queues'
    (they join ``queue-<id>`` of those), so they must not learn the other queues' request ids and timing."""
    refused = _communicator(reviewer, "approvals")
    connected, code = await refused.connect()
    assert not connected and code == 4403
    admitted = _communicator(operator, "approvals")
    connected, _ = await admitted.connect()
    assert connected
    await admitted.disconnect()

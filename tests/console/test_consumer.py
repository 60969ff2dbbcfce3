"""The live consumer: permission on connect, and a clean refusal when the channel layer is down."""

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from console.consumers import LiveConsumer

pytestmark = pytest.mark.django_db(transaction=True)


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

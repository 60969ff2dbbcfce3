from django.urls import re_path

from console.consumers import LiveConsumer

websocket_urlpatterns = [
    re_path(r"^ws/live/(?P<topic>[a-z]+(?:-[A-Za-z0-9_.:-]+)?)/$", LiveConsumer.as_asgi()),
]

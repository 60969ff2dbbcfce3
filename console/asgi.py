"""ASGI entry point: HTTP and WebSocket on one port.

In the embedded mode the ASGI lifespan starts the in-process scheduler that
runs the same job functions Celery beat runs in production.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from console.routing import websocket_urlpatterns  # noqa: E402


# Young collections after this many net new container objects instead of CPython's 700: an ingest
# batch of 100 spans holds thousands of dicts and lists at once, so 700 meant about one young
# collection per batch, promoting its live objects to be traversed again, and now and then a full
# collection over the whole heap (measured: 4-11 µs of GC per span ingested; 0-3 µs with this and
# the freeze). Cyclic garbage waits at most this many allocations longer.
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Once the app is loaded: move what startup made (modules, URL conf, templates) out of the
    collector's sight (``gc.freeze``) so full collections skip it, and collect young objects less often."""
    import gc

    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def lifespan(scope, receive, send):
    import asyncio

    from console import live, scheduler

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            live.bind_server_loop(asyncio.get_running_loop())
            scheduler.start_if_embedded()
            tune_garbage_collector()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            scheduler.stop()
            live.bind_server_loop(None)
            await send({"type": "lifespan.shutdown.complete"})
            return


from approvals.asgi import long_poll  # noqa: E402
from traces.ingest import fast_path as ingest_fast_path  # noqa: E402

application = ProtocolTypeRouter(
    {
        # GET /api/v1/approvals/{id}?wait=N is answered on the event loop, no thread per waiting agent;
        # POST /v1/traces without Django's handler and middleware (traces.ingest.fast_path).
        "http": ingest_fast_path(long_poll(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)

"""``python manage.py serve``: the console on uvicorn, HTTP and WebSocket on one port.

In the embedded mode the ASGI lifespan starts the in-process scheduler; with
``--fleet`` the demo agents start once the server is accepting requests.
"""

import os
import tempfile
import threading

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the console with uvicorn."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--fleet", action="store_true", help="start the demo agents too")

    def handle(self, *args, host, port, workers, fleet, **options):
        _default_base_url_to_this_server(host, port)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Workers are fresh processes: they read this before creating any metric.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="console-metrics-")
        if fleet:
            from agents import demo

            threading.Thread(target=demo.start_fleet, args=(f"http://{host}:{port}", self.stdout),
                             name="demo-fleet", daemon=True).start()
        uvicorn.run("console.asgi:application", host=host, port=port, workers=workers, lifespan="on",
                    log_level="info", proxy_headers=True, ws_max_size=1 << 20)


def _default_base_url_to_this_server(host: str, port: int) -> None:
    """Without CONSOLE_BASE_URL, the links the console sends (notification mails, webhooks, the
    approvals API's ``url``) point at the port this server listens on, not at the default 8000.

    Set in the environment too, so ``--workers`` processes (which import the settings afresh) agree.
    """
    if os.environ.get("CONSOLE_BASE_URL"):
        return
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in reachable:
        reachable = f"[{reachable}]"  # an IPv6 literal
    url = f"http://{reachable}:{port}"
    os.environ["CONSOLE_BASE_URL"] = url
    settings.CONSOLE_BASE_URL = url
    if not os.environ.get("CSRF_TRUSTED_ORIGINS") and url not in settings.CSRF_TRUSTED_ORIGINS:
        settings.CSRF_TRUSTED_ORIGINS = [*settings.CSRF_TRUSTED_ORIGINS, url]

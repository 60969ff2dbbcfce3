"""``python manage.py serve``: the console on uvicorn, HTTP and WebSocket on one port.

In the embedded mode the ASGI lifespan starts the in-process scheduler; with
``--fleet`` the demo agents start once the server is accepting requests.
"""

import os
import sys
import tempfile
import threading

import uvicorn
from uvicorn.main import STARTUP_FAILURE
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
        options = {"host": host, "port": port, "lifespan": "on", "log_level": "info", "proxy_headers": True,
                   "ws_max_size": 1 << 20}
        if not fleet:
            uvicorn.run("console.asgi:application", workers=workers, **options)
            return
        from agents import demo

        stop_fleet = threading.Event()
        fleet_thread = threading.Thread(target=demo.start_fleet, args=(f"http://{host}:{port}", self.stdout),
                                        kwargs={"until": stop_fleet}, name="demo-fleet", daemon=True)
        fleet_thread.start()
        if workers > 1:
            uvicorn.run("console.asgi:application", workers=workers, **options)
            return
        server = uvicorn.Server(uvicorn.Config("console.asgi:application", **options))
        server.handle_exit = _fleet_first(server.handle_exit, stop_fleet, fleet_thread)
        try:
            server.run()
        except KeyboardInterrupt:  # the Ctrl-C uvicorn re-raises once it has shut down
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the port was taken, say


FLEET_STOP_S = 20.0


def _fleet_first(handle_exit, stop_fleet: threading.Event, fleet_thread: threading.Thread):
    """Ctrl-C stops the demo fleet while the console still answers, then the server.

    Stopped after the server, the fleet's runs and span exporters retried against a closed port,
    logging a screen of connection errors and tracebacks for about 20 s before the process ended.
    A second Ctrl-C stops the server at once.
    """
    def handle(sig, frame):
        if stop_fleet.is_set() or not fleet_thread.is_alive():
            handle_exit(sig, frame)
            return
        stop_fleet.set()
        print("Stopping the demo fleet (Ctrl-C again to stop at once)…", flush=True)

        def then_the_server():
            fleet_thread.join(timeout=FLEET_STOP_S)
            handle_exit(sig, frame)
        threading.Thread(target=then_the_server, name="demo-fleet-stop", daemon=True).start()
    return handle


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

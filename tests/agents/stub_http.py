"""A scripted local HTTP server for the client's transport logic (retries, ETags, waits).

It only replays canned answers; tests that claim to test against the console
use the real one (``asgi_server``).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    def __init__(self):
        self.script = []  # (status, headers, body) answered in order; the last repeats
        self.requests = []  # (method, path, headers, json body or None)
        self.responder = None  # optional callable(method, path, headers, body) -> (status, headers, body)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                stub.requests.append((self.command, self.path, dict(self.headers), body))
                if stub.responder:
                    status, headers, payload = stub.responder(self.command, self.path, dict(self.headers), body)
                else:
                    status, headers, payload = stub.script.pop(0) if len(stub.script) > 1 else stub.script[0]
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

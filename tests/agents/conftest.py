# The real console on uvicorn in a thread, on the test database (see tests/browser/conftest.py).
from tests.browser.conftest import AsgiServer, asgi_server  # noqa: F401

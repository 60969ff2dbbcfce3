"""Under ASGI the whole middleware chain must be async-capable, or every async view
(OTLP ingest, approval waits) holds a thread for the whole request."""

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_middleware_is_async_capable(settings):
    from django.utils.module_loading import import_string

    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []


async def test_static_files_and_csp_through_the_async_chain():
    client = AsyncClient()
    static = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert static.status_code == 200
    page = await client.get("/login/")
    assert page.status_code == 200
    assert "script-src 'self'" in page["Content-Security-Policy"]

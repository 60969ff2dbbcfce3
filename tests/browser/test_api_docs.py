"""The API's Swagger page works offline: its assets are served by the console
itself (no CDN) and it renders under the console's Content-Security-Policy."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_api_docs_render_from_local_assets_without_csp_violations(asgi_server, page):
    offsite, violations = [], []
    page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith(asgi_server.url) else None)
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    response = page.goto(f"{asgi_server.url}/api/v1/docs")

    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Agent Ops Console API")
    expect(page.locator(".opblock-summary-path").filter(has_text="/api/v1/approvals").first).to_be_visible()
    assert offsite == []
    assert violations == []


def test_api_docs_link_back_to_the_console(asgi_server, page):
    page.goto(f"{asgi_server.url}/api/v1/docs")
    link = page.locator(".swagger-ui .info a", has_text="Back to the console")
    assert link.get_attribute("href") == "/"
    assert link.get_attribute("target") == "_blank"  # Swagger UI opens description links in a new tab
    with page.context.expect_page() as opened:
        link.click()
    console_tab = opened.value
    console_tab.wait_for_load_state()
    assert console_tab.url.rstrip("/").endswith(asgi_server.url.split("//")[1]) or "/login" in console_tab.url

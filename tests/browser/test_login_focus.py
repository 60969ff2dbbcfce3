"""A failed login keeps the username and puts the cursor in the password field, ready to retype."""

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser


def test_a_failed_login_focuses_the_password_and_keeps_the_username(asgi_server, page):
    factories.make_user(None, username="rita")
    page.goto(f"{asgi_server.url}/login/")
    expect(page.locator("#id_username")).to_be_focused()
    page.fill("#id_username", "rita")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#id_username")).to_have_value("rita")
    expect(page.locator("#id_password")).to_be_focused()
    page.keyboard.type(factories.PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{asgi_server.url}/")

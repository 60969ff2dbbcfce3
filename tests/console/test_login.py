import pytest
from django.test import Client

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_login_then_dashboard(reviewer):
    client = Client()
    response = client.post("/login/", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert b"Dashboard" in client.get("/").content


def test_wrong_password_says_so_without_saying_which_part(reviewer):
    response = Client().post("/login/", {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_login_is_rate_limited_per_user_and_address(reviewer, settings):
    settings.LOGIN_RATE_LIMIT = 3
    client = Client()
    for _ in range(3):
        client.post("/login/", {"username": "rita", "password": "nope"})
    response = client.post("/login/", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_pages_send_a_csp_without_unsafe_inline_scripts(reviewer_client):
    csp = reviewer_client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp

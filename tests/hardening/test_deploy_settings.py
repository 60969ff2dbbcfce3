"""Production settings: ``check --deploy`` clean, secure cookies, HSTS, CSRF on every POST, session expiry.

The production settings are read in a subprocess with a production environment
(no pytest imported there, so the settings module sees a real deployment).
"""

import json
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client
from django.utils import timezone

from tests.hardening.routes import ROUTES, fill

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"CONSOLE_TESTING", "DEBUG", "SECURE_SSL_REDIRECT", "SECURE_COOKIES", "SECURE_HSTS_SECONDS"}}
    env.update({"DATABASE_URL": "postgres://console@db.internal:5432/console", "REDIS_URL": "redis://redis:6379/0",
                "SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "false", "ALLOWED_HOSTS": "console.example.com",
                "CONSOLE_BASE_URL": "https://console.example.com", "DJANGO_SETTINGS_MODULE": "console.settings"})
    env.update(extra)
    return env


def run(args, **extra):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=production_env(**extra), capture_output=True,
                          text=True, timeout=120)


def test_check_deploy_is_clean_for_the_production_settings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_would_complain_about_an_unsafe_setting():
    """The check above can fail: HSTS off is reported."""
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], SECURE_HSTS_SECONDS="0")
    assert result.returncode != 0 and "security.W004" in result.stdout + result.stderr


PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name, None) for name in [
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SESSION_COOKIE_AGE", "SESSION_EXPIRE_AT_BROWSER_CLOSE", "X_FRAME_OPTIONS", "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS"]}))
"""


def test_production_cookies_are_secure_and_hsts_is_on():
    result = run(["-c", PROBE])
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SESSION_COOKIE_HTTPONLY"] and s["CSRF_COOKIE_HTTPONLY"]
    assert s["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_HSTS_SECONDS"] >= 31536000 and s["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert s["SESSION_EXPIRE_AT_BROWSER_CLOSE"] and 0 < s["SESSION_COOKIE_AGE"] <= 12 * 3600
    assert s["X_FRAME_OPTIONS"] == "DENY" and s["SECURE_CONTENT_TYPE_NOSNIFF"]
    assert s["ALLOWED_HOSTS"] == ["console.example.com"]


@pytest.mark.parametrize("key", ["x" * 49, ""])
def test_production_refuses_a_weak_secret_key(key):
    result = run(["-c", PROBE], SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_https_answers_carry_hsts_and_secure_cookies(world, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    client = Client()
    response = client.get("/login/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.cookies["csrftoken"]["secure"] and response.cookies["csrftoken"]["httponly"]
    token = response.cookies["csrftoken"].value
    from tests.factories import PASSWORD

    response = client.post("/login/", {"username": "rita", "password": PASSWORD, "csrfmiddlewaretoken": token},
                           secure=True)
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]


# --- CSRF ---------------------------------------------------------------------------------------

CSRF_EXEMPT = {"v1/traces"}  # bearer-authenticated machine endpoint (OTLP); no cookie is ever read


def _post_routes(world):
    for route, _p in ROUTES:
        if route.startswith(("api/", "v1/")) or route in CSRF_EXEMPT:
            continue
        yield route, fill(route, world)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "reviewer"])
def test_every_form_and_htmx_post_needs_the_csrf_token(world, role):
    user = world.admin if role == "admin" else world.reviewer
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    problems = []
    for route, url in _post_routes(world):
        for htmx in (False, True):
            extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            with transaction.atomic():
                response = client.post(url, {"reason": "x", "verdict": "approve"}, **extra)
                transaction.set_rollback(True)
            if response.status_code != 403:
                problems.append(f"POST {url} (htmx={htmx}) without a token: {response.status_code}")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_the_session_api_needs_the_csrf_token_and_works_with_it(world):
    from approvals.models import Status

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.reviewer)
    url = f"/api/v1/approvals/{world.request.pk}/decision"
    response = client.post(url, {"decision": "approve"}, content_type="application/json")
    assert response.status_code == 403
    world.request.refresh_from_db()
    assert world.request.status == Status.PENDING
    page = client.get(f"/approvals/{world.request.pk}/")
    token = page.context["csrf_token"]
    response = client.post(url, {"decision": "approve"}, content_type="application/json", HTTP_X_CSRFTOKEN=str(token))
    assert response.status_code == 200, response.content
    world.request.refresh_from_db()
    assert world.request.status == Status.APPROVED


@pytest.mark.django_db
def test_an_htmx_post_with_the_page_token_passes(world):
    """The token htmx sends (base.html hx-headers) is accepted: the 403s above are about the token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.reviewer)
    page = client.get(f"/approvals/{world.request.pk}/")
    assert 'hx-headers=\'{"X-CSRFToken": "' in page.content.decode()
    response = client.post(f"/approvals/{world.request.pk}/claim/", HTTP_HX_REQUEST="true",
                           HTTP_X_CSRFTOKEN=str(page.context["csrf_token"]))
    assert response.status_code != 403


# --- sessions -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_session_is_sent_to_login(world):
    client = world.client("reviewer")
    assert client.get("/").status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_login_is_rate_limited_even_with_rotating_passwords_and_the_admin_login(world, settings):
    settings.LOGIN_RATE_LIMIT = 3
    client = Client()
    for attempt in range(3):
        client.post("/login/", {"username": "ada", "password": f"guess-{attempt}"})
    assert client.post("/login/", {"username": "ada", "password": "guess-9"}).status_code == 429
    # the Django admin's login form is no way around it
    response = client.post("/django-admin/login/", {"username": "ada", "password": "guess-10"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "_auth_user_id" not in client.session

"""``manage.py serve --port N`` (and ``demo --port N``): the links the console hands out lead to port N.

Without CONSOLE_BASE_URL the approvals API's ``url`` and the "Decide:" link of the notification
mails said http://127.0.0.1:8000 whatever port the console was on, so a newcomer who picked another
port followed dead links (or reached a different console).
"""

import json

import pytest
import uvicorn
from django.core import mail
from django.core.management import call_command

from approvals import jobs
from approvals.services import update_matrix
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def serve_without_serving(monkeypatch, settings):
    """Run the serve command up to uvicorn; its settings and environment changes end with the test."""
    for name in ("CONSOLE_BASE_URL", "CSRF_TRUSTED_ORIGINS"):
        monkeypatch.setenv(name, "")  # recorded as unset: undone after the test even if serve sets it
        monkeypatch.delenv(name)
    settings.CONSOLE_BASE_URL = settings.CONSOLE_BASE_URL
    settings.CSRF_TRUSTED_ORIGINS = list(settings.CSRF_TRUSTED_ORIGINS)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(kwargs))

    def serve(**options):
        call_command("serve", **options)
        return served[-1]
    return serve


def _ask(client, agent_headers) -> dict:
    response = client.post("/api/v1/approvals", content_type="application/json", **agent_headers, data=json.dumps(
        {"action": "refunds.issue", "arguments": {"order": 42}, "summary": "Refund order 42", "risk": "high"}))
    assert response.status_code == 201, response.content
    return response.json()


def test_served_on_another_port_the_api_and_the_mails_link_to_that_port(serve_without_serving, client, agent,
                                                                         agent_headers, admin_user, fixed_now):
    assert serve_without_serving(port=8123, host="127.0.0.1")["port"] == 8123

    created = _ask(client, agent_headers)
    assert created["url"] == f"http://127.0.0.1:8123/approvals/{created['id']}/"

    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    make_reviewer(queue, "rita")
    update_matrix(queue_id=queue.pk, breach_action="keep_pending_and_page", actor=admin_user,
                  levels=[{"after_minutes": 0, "queue_reviewers": True, "email": True}])
    req = make_request(agent=agent, risk="high", now=fixed_now)
    jobs.fire_due_escalations(now=fixed_now)
    jobs.deliver_pending_notifications(now=fixed_now)
    assert f"Decide: http://127.0.0.1:8123/approvals/{req.pk}/" in mail.outbox[0].body


def test_a_server_on_every_interface_links_to_loopback_and_an_explicit_base_url_wins(serve_without_serving, client,
                                                                                    agent_headers, monkeypatch,
                                                                                    settings):
    serve_without_serving(port=8124, host="0.0.0.0")
    assert _ask(client, agent_headers)["url"].startswith("http://127.0.0.1:8124/approvals/")

    monkeypatch.setenv("CONSOLE_BASE_URL", "https://console.example.com")
    settings.CONSOLE_BASE_URL = "https://console.example.com"
    serve_without_serving(port=8125, host="0.0.0.0")
    assert _ask(client, agent_headers)["url"].startswith("https://console.example.com/approvals/")

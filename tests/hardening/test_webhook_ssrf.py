"""Webhooks cannot be aimed at internal hosts (SSRF): refused when saved, refused again when sent.

An admin (or whoever stole an admin's session) types webhook URLs: escalation levels and prompt-label
subscribers. Those must not make the console POST to PostgreSQL, Redis or the cloud metadata service
beside it, unless the operator lists the receiver in WEBHOOK_ALLOWED_PRIVATE_HOSTS.
"""

import shutil
import socket
import ssl
import subprocess
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import DeliveryStatus as PromptDeliveryStatus
from agents.models import PromptWebhook, WebhookAttempt, WebhookDelivery
from agents.prompts import webhooks
from approvals import jobs
from approvals.models import Delivery, DeliveryAttempt, DeliveryStatus, EscalationMatrix
from console import egress
from console.models import AuditEntry
from tests.agents.test_prompt_fixtures import add_version, make_prompt
from tests.approvals.test_notify import Receiver, _request_with_webhook
from tests.approvals.test_views_policies import level
from tests.console.test_egress import REAL_GETADDRINFO, fake_dns

pytestmark = pytest.mark.django_db

ALLOW_HINT = "allow it with WEBHOOK_ALLOWED_PRIVATE_HOSTS"


@pytest.fixture
def nothing_allowed(settings):
    """Production's default: no internal receiver listed (the embedded mode would allow loopback)."""
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    return settings


@pytest.fixture
def queue(reviewer):
    from tests.approvals.test_views import make_queue
    return make_queue("billing", reviewer)


@pytest.fixture
def prompt():
    p = make_prompt()
    add_version(p, "v2 {ticket}")
    return p


def _move_label(prompt, admin_user):
    agent_services.move_label(prompt=prompt, label="production", version=prompt.versions.get(number=2),
                              actor=admin_user)


# --- on save: the field says which address and which setting ----------------------------------------


@pytest.mark.parametrize("url, why", [
    ("http://10.0.0.5/hook", "10.0.0.5 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"),
    ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
    ("http://[::ffff:192.168.0.10]/", "::ffff:192.168.0.10 is a private address"),
])
def test_matrix_refuses_an_internal_webhook_url_beside_the_field(admin_client_, queue, nothing_allowed, url, why):
    data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0, webhook_url=url)}
    response = admin_client_.post(f"/queues/{queue.pk}/matrix/", data)
    assert response.status_code == 400
    html = response.content.decode()
    field = html.split('data-field-error="level-0-webhook_url"')[1].split("</div>")[0]
    assert f"{why}; {ALLOW_HINT}." in field
    assert not EscalationMatrix.objects.filter(queue=queue).exists()
    assert not AuditEntry.objects.filter(action="escalation_matrix.updated").exists()


def test_matrix_saves_a_listed_internal_receiver_and_audits_it(admin_client_, queue, settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["10.20.0.0/16"]
    data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0, webhook_url="http://10.20.0.7/hook")}
    assert admin_client_.post(f"/queues/{queue.pk}/matrix/", data).status_code == 302
    assert EscalationMatrix.objects.get(queue=queue).levels.get().webhook_url == "http://10.20.0.7/hook"
    entry = AuditEntry.objects.get(action="escalation_matrix.updated")
    assert entry.after["levels"][0]["webhook_url"] == "http://10.20.0.7/hook"


def test_matrix_saves_a_name_that_does_not_resolve_now(admin_client_, queue, nothing_allowed, monkeypatch):
    fake_dns(monkeypatch, {})  # DNS down at save time: the send checks again
    data = {"op": "save", "breach_action": "keep_pending_and_page",
            **level(0, webhook_url="https://oncall.example.test/hook")}
    assert admin_client_.post(f"/queues/{queue.pk}/matrix/", data).status_code == 302
    assert AuditEntry.objects.filter(action="escalation_matrix.updated").exists()


def test_prompt_webhook_to_the_metadata_service_is_refused_naming_the_url_field(admin_client_, prompt,
                                                                                 nothing_allowed):
    response = admin_client_.post("/prompts/support-reply/webhooks/",
                                  {"url": "http://169.254.169.254/latest/meta-data/", "secret": "s" * 20},
                                  follow=True)
    page = response.content.decode()
    assert f"Webhook not added: url: 169.254.169.254 is the cloud metadata address; {ALLOW_HINT}." in page
    assert not PromptWebhook.objects.exists()
    assert not AuditEntry.objects.filter(action="prompt.webhook_added").exists()


# --- on send: refused, recorded, never retried, nothing reaches the address ----------------------------


def test_an_escalation_webhook_to_a_loopback_receiver_is_refused_when_sent(agent, admin_user, fixed_now,
                                                                           nothing_allowed):
    with Receiver() as receiver:
        # Saved through the service (as by an older version, or before the allow-list shrank): no form check.
        req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
        assert jobs.deliver_pending_notifications(now=fixed_now) == 0
        for hours in (1, 2, 24):  # a refused delivery is not retried
            jobs.deliver_pending_notifications(now=fixed_now + timedelta(hours=hours))
    assert receiver.received == []
    delivery = Delivery.objects.get(request=req, channel="webhook")
    reason = f"refused: 127.0.0.1 is a loopback address; {ALLOW_HINT}"
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.FAILED, 1, reason)
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.ok, attempt.status_code, attempt.error) == (False, None, reason)


def test_a_prompt_webhook_to_a_loopback_receiver_is_refused_when_sent(prompt, admin_user, nothing_allowed):
    with Receiver() as receiver:
        PromptWebhook.objects.create(prompt=prompt, url=receiver.url, secret="s" * 20)
        _move_label(prompt, admin_user)
        now = timezone.now() + timedelta(minutes=1)
        assert webhooks.deliver_due(now=now) == 0
        for hours in (1, 2, 24):
            webhooks.deliver_due(now=now + timedelta(hours=hours))
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    reason = f"refused: 127.0.0.1 is a loopback address; {ALLOW_HINT}"
    assert (delivery.status, delivery.attempts, delivery.last_error) == (PromptDeliveryStatus.FAILED, 1, reason)
    assert list(WebhookAttempt.objects.values_list("status_code", "error")) == [(None, reason)]


def test_a_name_that_was_public_when_saved_and_internal_when_sent_is_refused(admin_client_, queue, agent,
                                                                              admin_user, fixed_now,
                                                                              nothing_allowed, monkeypatch):
    with Receiver() as receiver:
        url = f"http://hooks.example.test:{receiver.server.server_port}/hook"
        fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34"]})
        data = {"op": "save", "breach_action": "keep_pending_and_page", **level(0, webhook_url=url)}
        assert admin_client_.post(f"/queues/{queue.pk}/matrix/", data).status_code == 302
        fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})  # DNS rebinding
        req = _request_with_webhook(agent, admin_user, fixed_now, url)
        jobs.deliver_pending_notifications(now=fixed_now)
    assert receiver.received == []
    delivery = Delivery.objects.get(request=req, channel="webhook")
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == f"refused: hooks.example.test resolves to 127.0.0.1, a loopback address; {ALLOW_HINT}"


def test_the_send_connects_to_the_address_it_checked_keeping_the_host_name(agent, admin_user, fixed_now, settings,
                                                                           monkeypatch):
    """The name is resolved once: a second answer (10.0.0.5, rebinding) is never asked for or connected to."""
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    lookups = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "hooks.example.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "10.0.0.5"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with Receiver() as receiver:
        url = f"http://hooks.example.test:{receiver.server.server_port}/hook"
        req = _request_with_webhook(agent, admin_user, fixed_now, url)
        assert jobs.deliver_pending_notifications(now=fixed_now) == 1
    assert lookups == ["hooks.example.test"]
    assert [headers["Host"] for headers, _body in receiver.received] == [
        f"hooks.example.test:{receiver.server.server_port}"]
    assert Delivery.objects.get(request=req, channel="webhook").status == DeliveryStatus.SENT


class RedirectingReceiver(Receiver):
    """Answers every post with 302 to ``location``."""

    def __init__(self, location: str):
        super().__init__()
        handler = self.server.RequestHandlerClass
        receiver = self

        def do_post(self):
            receiver.received.append((dict(self.headers), b""))
            self.send_response(302)
            self.send_header("Location", location)
            self.end_headers()

        handler.do_POST = do_post


def test_a_redirect_is_not_followed(agent, admin_user, fixed_now, prompt, settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]  # both receivers are local
    with Receiver() as inner, RedirectingReceiver(inner.url) as outer:
        req = _request_with_webhook(agent, admin_user, fixed_now, outer.url)
        jobs.deliver_pending_notifications(now=fixed_now)
        PromptWebhook.objects.create(prompt=prompt, url=outer.url, secret="s" * 20)
        _move_label(prompt, admin_user)
        webhooks.deliver_due(now=timezone.now() + timedelta(minutes=1))
    assert len(outer.received) == 2 and inner.received == []
    assert Delivery.objects.get(request=req, channel="webhook").last_error == "HTTP 302"
    assert WebhookDelivery.objects.get().last_error == "HTTP 302"


# --- TLS: the certificate is checked against the name, not the address connected to -------------------


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate names hooks.example.test; records the SNI it was sent."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=hooks.example.test",
                    "-addext", "subjectAltName=DNS:hooks.example.test"], check=True, capture_output=True)
    seen = {"sni": [], "hosts": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["hosts"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, cert, seen
    finally:
        server.shutdown()
        server.server_close()


def test_https_keeps_the_name_for_sni_and_the_certificate(tls_receiver, settings, monkeypatch):
    port, cert, seen = tls_receiver
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(transport=egress.PinnedTransport(verify=trust), trust_env=False) as client:
        assert client.post(f"https://hooks.example.test:{port}/hook", content=b"{}").status_code == 204
        with pytest.raises(httpx.ConnectError, match="certificate"):  # the address is not the certificate's name
            client.post(f"https://127.0.0.1:{port}/hook", content=b"{}")
    assert seen["sni"][0] == "hooks.example.test" and seen["hosts"] == [f"hooks.example.test:{port}"]

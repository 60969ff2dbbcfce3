"""A webhook receiver cannot hold the delivery worker, nor fill its memory.

Each read of a send had a 5 s timeout, but nothing bounded the whole send: a receiver that answered
"200 OK" and then a byte every second (each read well within its timeout) kept the approvals delivery
job (every page and e-mail behind it) or the prompt-webhook job in that one post for as long as it
liked, and a receiver that answered with a huge body had all of it read into memory. A send now ends
at egress.SEND_DEADLINE_S however the receiver drips (a failed attempt, retried), and at most
egress.MAX_RESPONSE_BYTES of an answer are read (the status is what counts).
"""

import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import WebhookDelivery
from agents.prompts import webhooks
from approvals import jobs
from approvals.models import Delivery, DeliveryStatus
from console import egress
from tests.approvals.test_notify import _request_with_webhook
from tests.hardening.test_webhook_ssrf import _move_label, prompt  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


class RawReceiver:
    """Answers the first request with ``head`` and then ``body_chunks`` (each after ``gap`` seconds);
    records how many body bytes it managed to send and whether the client hung up first."""

    def __init__(self, head: bytes, chunks: int, chunk: bytes, gap: float = 0.0):
        self.head, self.chunks, self.chunk, self.gap = head, chunks, chunk, gap
        self.sent, self.cut_off, self.done = 0, False, threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.server.accept()
        try:
            conn.recv(65536)
            conn.sendall(self.head)
            for _ in range(self.chunks):
                conn.sendall(self.chunk)
                self.sent += len(self.chunk)
                if self.gap:
                    self.done.wait(self.gap)
        except OSError:
            self.cut_off = True
        finally:
            conn.close()
            self.done.set()

    def close(self):
        self.done.wait(30)
        self.server.close()


@pytest.fixture
def quick_deadline(settings, monkeypatch):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    monkeypatch.setattr(egress, "SEND_DEADLINE_S", 1.0)


def _dripping() -> RawReceiver:
    # 200 OK, then a byte every 0.25 s for 10 s: every read is well within the 5 s read timeout.
    return RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n", chunks=40, chunk=b"x", gap=0.25)


def test_an_escalation_webhook_that_drips_its_answer_is_cut_off_and_retried(agent, admin_user, fixed_now,
                                                                            quick_deadline):
    receiver = _dripping()
    req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
    assert jobs.deliver_pending_notifications(now=fixed_now) == 0
    receiver.close()
    assert receiver.cut_off and receiver.sent < 40
    delivery = Delivery.objects.get(request=req, channel="webhook")
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)  # retried later
    assert "took longer than 1 s" in delivery.last_error


def test_a_prompt_webhook_that_drips_its_answer_is_cut_off(prompt, admin_user, quick_deadline):  # noqa: F811
    from agents.models import PromptWebhook

    receiver = _dripping()
    PromptWebhook.objects.create(prompt=prompt, url=receiver.url, secret="s" * 20)
    _move_label(prompt, admin_user)
    assert webhooks.deliver_due(now=timezone.now() + timedelta(minutes=1)) == 0
    receiver.close()
    assert receiver.cut_off
    assert "took longer than 1 s" in WebhookDelivery.objects.get().last_error


def test_a_huge_answer_is_not_read_whole(agent, admin_user, fixed_now, settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    total = 64 * 1024 * 1024
    receiver = RawReceiver(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode(),
                           chunks=total // 65536, chunk=b"x" * 65536)
    req = _request_with_webhook(agent, admin_user, fixed_now, receiver.url)
    assert jobs.deliver_pending_notifications(now=fixed_now) == 1  # the 200 counts
    receiver.close()
    assert receiver.cut_off and receiver.sent < total
    assert Delivery.objects.get(request=req, channel="webhook").status == DeliveryStatus.SENT

"""Other spellings of a loopback receiver do not get through the egress check (production default:
nothing allowed). Each is sent through egress.client to a real receiver on 127.0.0.1 and checked on
save; nothing may arrive. (A regression net for the review of console/egress.py: all refused already.)"""

import httpx
import pytest
from django.core.exceptions import ValidationError

from console import egress
from tests.approvals.test_notify import Receiver

FORMS = ["http://2130706433:{port}/", "http://0x7f.0.0.1:{port}/", "http://127.1:{port}/", "http://0177.0.0.1:{port}/",
         "http://0x7f000001:{port}/", "http://017700000001:{port}/", "http://127.0.0.1.:{port}/",
         "http://[::]:{port}/", "http://[::1]:{port}/", "http://[::ffff:127.0.0.1]:{port}/",
         "http://[0:0:0:0:0:ffff:7f00:1]:{port}/", "http://[::1%25lo]:{port}/", "http://[::127.0.0.1]:{port}/",
         "http://[64:ff9b::7f00:1]:{port}/", "http://[2002:7f00:1::]:{port}/", "http://0.0.0.0:{port}/",
         "http://0:{port}/", "http://public.example@127.0.0.1:{port}/", "HTTP://127.0.0.1:{port}/",
         "http://localhost:{port}/", "http://LOCALHOST.:{port}/", "http://127。0。0。1:{port}/",
         "http://１２７.０.０.１:{port}/", "http://ｌｏｃａｌｈｏｓｔ:{port}/", "http://127.0.0.1:0{port}/",
         "http://127.0.0.1:{port}/\n", " http://127.0.0.1:{port}/", "https://127.0.0.1:{port}/",
         "http://127.0.0.1:{port}/" + "a" * 70000]


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as r:
        yield r


@pytest.mark.parametrize("form", FORMS)
def test_a_loopback_receiver_is_not_reached_however_spelled(settings, receiver, form):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    url = form.format(port=receiver.server.server_port)
    with pytest.raises((egress.Refused, httpx.HTTPError)):
        with egress.client(timeout=3) as client:
            client.post(url, content=b"{}")
    assert receiver.received == []


# Those a resolver answers the same everywhere (a trailing dot or an unusual name may not resolve at all,
# which is accepted on save and refused on send, above).
ON_SAVE = [f for f in FORMS if not any(s in f for s in (".:", "LOCALHOST", "１", "ｌ", "\n", " http", "0177"))]


@pytest.mark.parametrize("form", ON_SAVE)
def test_on_save_the_loopback_spellings_are_refused(settings, receiver, form):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    with pytest.raises(ValidationError):
        egress.validate_on_save(form.format(port=receiver.server.server_port))

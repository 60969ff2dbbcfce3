"""Which addresses a webhook may reach (console.egress): internal ones only when an operator lists them."""

import ipaddress
import json
import socket
import subprocess
import sys

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from console import egress
from tests.console.test_settings_mode import CLEAN_ENV, probe

REAL_GETADDRINFO = socket.getaddrinfo


def fake_dns(monkeypatch, names: dict[str, list[str]]):
    """Names resolve as ``names`` says (others do not resolve); literal addresses as usual."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port, 0, 0) if ":" in a else (a, port)) for a in names[host]]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def nothing_allowed(settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    return settings


REFUSED = [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.3.4", "a private address"),
    ("172.31.255.254", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("fc00::1", "a private address"),
    ("169.254.169.254", "the cloud metadata address"),
    ("fd00:ec2::254", "the cloud metadata address"),
    ("169.254.10.20", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("100.64.0.1", "a carrier-grade NAT (shared) address"),
    ("100.127.255.254", "a carrier-grade NAT (shared) address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"),
    ("192.0.2.10", "not a public address"),          # documentation range
    ("::ffff:127.0.0.1", "a loopback address"),      # IPv4-mapped IPv6
    ("::ffff:10.0.0.5", "a private address"),
    ("64:ff9b::a00:5", "a private address"),         # NAT64 of 10.0.0.5
    ("::ffff:169.254.169.254", "the cloud metadata address"),
    ("2002:a00:5::1", "a private address"),          # 6to4 of 10.0.0.5
    ("64:ff9b::a9fe:a9fe", "the cloud metadata address"),  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("address, kind", REFUSED)
def test_internal_addresses_are_refused_and_named(nothing_allowed, address, kind):
    url = f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}:8080/hook"
    with pytest.raises(egress.Refused) as refused:
        egress.checked_addresses(url)
    assert str(refused.value) == f"{egress.shown(ipaddress.ip_address(address))} is {kind}; allow it with " \
                                 "WEBHOOK_ALLOWED_PRIVATE_HOSTS"


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "100.128.0.1", "172.32.0.1",
                                     "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808"])
def test_public_addresses_pass(nothing_allowed, address):
    host, addresses = egress.checked_addresses(f"https://[{address}]/" if ":" in address else f"https://{address}/")
    assert addresses == [ipaddress.ip_address(address)]


def test_every_address_a_name_resolves_to_is_checked(nothing_allowed, monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(egress.Refused, match=r"^hooks.example.test resolves to 10.0.0.5, a private address; allow "
                                             r"it with WEBHOOK_ALLOWED_PRIVATE_HOSTS$"):
        egress.checked_addresses("https://hooks.example.test/x")


def test_a_name_resolving_to_a_mapped_loopback_address_is_refused(nothing_allowed, monkeypatch):
    fake_dns(monkeypatch, {"sneaky.example.test": ["::ffff:127.0.0.1"]})
    with pytest.raises(egress.Refused, match="a loopback address"):
        egress.checked_addresses("http://sneaky.example.test/")


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "file:///etc/passwd", "gopher://93.184.216.34/",
                                 "http:///no-host"])
def test_only_http_and_https_urls_with_a_host(nothing_allowed, url):
    with pytest.raises(egress.Refused):
        egress.checked_addresses(url)


def test_allow_list_by_network(settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["10.20.0.0/16", "fd12::/64"]
    assert egress.checked_addresses("http://10.20.3.4/")[1] == [ipaddress.ip_address("10.20.3.4")]
    assert egress.checked_addresses("http://[::ffff:10.20.3.4]/")[1]  # the mapped form of a listed address
    assert egress.checked_addresses("http://[fd12::7]/")[1]
    for outside in ("http://10.21.0.1/", "http://192.168.1.1/", "http://[fd13::7]/", "http://169.254.169.254/"):
        with pytest.raises(egress.Refused):
            egress.checked_addresses(outside)


def test_allow_list_by_single_address(settings):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    assert egress.checked_addresses("http://127.0.0.1:9000/")[1]
    with pytest.raises(egress.Refused, match="127.0.0.2 is a loopback address"):
        egress.checked_addresses("http://127.0.0.2:9000/")


def test_allow_list_by_host_name_allows_that_name_only(settings, monkeypatch):
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["Chat-Relay.internal"]
    fake_dns(monkeypatch, {"chat-relay.internal": ["10.9.9.9"], "other.internal": ["10.9.9.9"]})
    assert egress.checked_addresses("http://chat-relay.internal/hook")[1] == [ipaddress.ip_address("10.9.9.9")]
    with pytest.raises(egress.Refused, match="other.internal resolves to 10.9.9.9, a private address"):
        egress.checked_addresses("http://other.internal/hook")


def test_on_save_a_name_that_does_not_resolve_is_accepted(nothing_allowed, monkeypatch):
    fake_dns(monkeypatch, {})
    egress.validate_on_save("https://hooks.example.test/x")  # DNS down or not yet set up: checked when sent


def test_on_save_an_internal_address_is_refused(nothing_allowed, monkeypatch):
    fake_dns(monkeypatch, {"intranet.example.test": ["192.168.7.7"]})
    with pytest.raises(ValidationError) as literal:
        egress.validate_on_save("http://10.0.0.5/hook")
    assert literal.value.messages == ["10.0.0.5 is a private address; allow it with WEBHOOK_ALLOWED_PRIVATE_HOSTS."]
    with pytest.raises(ValidationError, match="intranet.example.test resolves to 192.168.7.7, a private address"):
        egress.validate_on_save("http://intranet.example.test/hook")


def test_production_allows_no_internal_receiver_by_default_and_embedded_allows_loopback():
    code = "import json, console.settings as s; print(json.dumps(s.WEBHOOK_ALLOWED_PRIVATE_HOSTS))"
    production = {"DATABASE_URL": "postgres://u@db.example:5432/console", "REDIS_URL": "redis://cache:6379/0",
                  "SECRET_KEY": "x" * 50, "DEBUG": "false"}
    assert json.loads(_run(code, **production)) == []
    assert json.loads(_run(code, **production, WEBHOOK_ALLOWED_PRIVATE_HOSTS="relay.internal, 10.1.0.0/16")) == [
        "relay.internal", "10.1.0.0/16"]
    assert json.loads(_run(code)) == ["127.0.0.0/8", "::1"]


def test_a_malformed_network_in_the_allow_list_stops_the_start():
    result = probe(WEBHOOK_ALLOWED_PRIVATE_HOSTS="10.0.0.0/33")
    assert result.returncode != 0 and "WEBHOOK_ALLOWED_PRIVATE_HOSTS: '10.0.0.0/33' is not a network" in result.stderr


def _run(code: str, **env) -> str:
    clean = {k: v for k, v in CLEAN_ENV.items() if k != egress.SETTING}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                            cwd=settings.BASE_DIR, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_name_the_resolver_cannot_take_is_a_connect_error_when_sent(nothing_allowed, monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise ValueError("the resolver refuses this name")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    egress.validate_on_save("https://hooks.example.test/x")  # not resolvable now: accepted
    with egress.client(timeout=1) as client, pytest.raises(httpx.ConnectError, match="cannot resolve"):
        client.post("https://hooks.example.test/x", content=b"{}")  # retried like any connect error

"""Outgoing HTTP to URLs an admin typed (webhooks): which addresses they may reach.

The console runs inside a private network beside PostgreSQL, Redis and the cloud metadata service;
a webhook URL must not make it POST to those (SSRF). A URL is checked when it is saved
(``validate_on_save``) and again when it is sent: ``client()`` resolves the host once, checks every
address, and connects only to an address it checked, so a name that resolves elsewhere by then (DNS
rebinding) cannot slip through. Redirects are not followed and proxies from the environment are not
used (a proxy would resolve the name itself).

``settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS`` lists the internal receivers an operator allows: host
names (matched exactly, whatever they resolve to) and addresses or networks (``10.1.2.3``,
``10.1.0.0/16``, ``fd12::/64``).
"""

import ipaddress
import socket
import threading
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

SETTING = "WEBHOOK_ALLOWED_PRIVATE_HOSTS"
SCHEMES = ("http", "https")
SAVE_RESOLVE_TIMEOUT_S = 3.0  # a save does not wait longer for DNS; sending checks again anyway
# A whole send (connect, request, answer) ends by then, however slowly the receiver answers: each read
# has the client's timeout, but a receiver sending a byte per read would otherwise hold the worker.
SEND_DEADLINE_S = 30.0
MAX_RESPONSE_BYTES = 64 * 1024  # of an answer's body; a webhook's answer is its status

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class Refused(Exception):
    """The URL may not be used; ``str()`` says why, naming the address and the setting that allows it."""


# --- the policy ---------------------------------------------------------------------------------


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, NAT64), else None."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def internal_kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` an internal address ("a private address", ...), or None for a public one."""
    inner = embedded_ipv4(ip)
    if inner is not None:  # reaches (or is translated to) that IPv4 address: judged as it
        return internal_kind(inner)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _METADATA:
        return "the cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def allow_list() -> tuple[set[str], list]:
    """(host names, networks) from ``settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS``, read on each call."""
    names, networks = set(), []
    for entry in getattr(settings, SETTING, []) or []:
        entry = entry.strip().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


def is_allowed(host: str, ip: IPAddress, allowed: tuple[set[str], list]) -> bool:
    names, networks = allowed
    if host.lower().rstrip(".") in names:
        return True
    candidates = [ip] + ([inner] if (inner := embedded_ipv4(ip)) is not None else [])
    return any(c in net for c in candidates for net in networks if net.version == c.version)


def refusal(host: str, ip: IPAddress, allowed: tuple[set[str], list] | None = None) -> str | None:
    """Why ``host`` at ``ip`` may not be reached, or None if it may."""
    kind = internal_kind(ip)
    if kind is None or is_allowed(host, ip, allowed if allowed is not None else allow_list()):
        return None
    if _literal(host) is not None:
        return f"{shown(ip)} is {kind}; allow it with {SETTING}"
    return f"{host} resolves to {shown(ip)}, {kind}; allow it with {SETTING}"


def shown(ip: IPAddress) -> str:
    """``ip`` as people write it (``::ffff:10.0.0.5``, not ``::ffff:a00:5``)."""
    mapped = ip.ipv4_mapped if ip.version == 6 else None
    return f"::ffff:{mapped}" if mapped is not None else str(ip)


# --- parsing and resolving ---------------------------------------------------------------------


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def sendable(url: str) -> httpx.URL:
    """``url`` as the sender parses it; raises Refused if httpx cannot (a host name that is not valid
    IDNA 2008, such as full-width letters or ``xn--a``, which Django's URLField and Python's resolver accept)."""
    try:
        parsed = httpx.URL(url)
        parsed.host  # decodes an xn-- name (for the Host header): fails on one that is not valid IDNA
        return parsed
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        raise Refused(f"{url[:200]!r} cannot be sent to: {exc}") from exc


def split(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; raises Refused for any other scheme, a URL without a host or
    one the sender cannot parse."""
    sendable(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"{url!r} is not a valid URL") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise Refused(f"only http and https URLs can be used, not {parts.scheme or 'no scheme'}")
    if not parts.hostname:
        raise Refused("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order; raises OSError if it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    found = []
    for *_rest, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise OSError(f"{host} has no address")
    return found


def checked_addresses(url: str) -> tuple[str, list[IPAddress]]:
    """(host, addresses) of ``url``, every address allowed; raises Refused, or OSError if it does not resolve."""
    host, port = split(url)
    addresses = resolve(host, port)
    allowed = allow_list()
    for ip in addresses:
        reason = refusal(host, ip, allowed)
        if reason:
            raise Refused(reason)
    return host, addresses


# --- on save -----------------------------------------------------------------------------------


def _resolve_within(host: str, port: int, timeout: float) -> list[IPAddress] | None:
    """``resolve`` given ``timeout`` seconds; None if it fails or takes longer."""
    result: list = []

    def run():
        try:
            result.append(resolve(host, port))
        except (OSError, UnicodeError, ValueError):
            pass  # not resolvable now: accepted, and checked again when sent

    thread = threading.Thread(target=run, daemon=True, name="egress-resolve")
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


def validate_on_save(url: str) -> None:
    """Raise ValidationError if ``url`` is a literal internal address or resolves to one now.

    A name that does not resolve now is accepted: DNS may be down at save time, and every send checks again.
    """
    if not url:
        return
    try:
        host, port = split(url)
    except Refused as exc:
        raise ValidationError(str(exc)) from exc
    addresses = _resolve_within(host, port, SAVE_RESOLVE_TIMEOUT_S)
    allowed = allow_list()
    for ip in addresses or []:
        reason = refusal(host, ip, allowed)
        if reason:
            raise ValidationError(reason + ".")


# --- on send -----------------------------------------------------------------------------------


class _Deadline:
    """Shuts a send's sockets once ``seconds`` have passed, so the read waiting on them ends."""

    def __init__(self, seconds: float):
        self.seconds, self.expired = seconds, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict) -> None:
        """httpcore's ``trace`` extension: learns each socket the send opens (TCP, then TLS over it)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def timeout(self, exc: Exception, request: httpx.Request) -> Exception:
        """``exc`` as the timeout it was, if the deadline caused it."""
        if not self.expired:
            return exc
        return httpx.ReadTimeout(f"the receiver took longer than {self.seconds:g} s", request=request)


def _shut(sock) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: an SSLSocket's own drops its state
    except (OSError, TypeError):
        pass


class _CappedBody(httpx.SyncByteStream):
    """An answer's body, at most MAX_RESPONSE_BYTES of it, read before the deadline."""

    def __init__(self, stream: httpx.SyncByteStream, deadline: _Deadline, request: httpx.Request):
        self._stream, self._deadline, self._request = stream, deadline, request

    def __iter__(self):
        left = MAX_RESPONSE_BYTES
        try:
            for chunk in self._stream:
                yield chunk[:left]
                left -= len(chunk)
                if left <= 0:
                    return  # the rest is not read; the connection is closed, never kept alive
        except httpx.TransportError as exc:
            raise self._deadline.timeout(exc, self._request) from exc

    def close(self) -> None:
        self._deadline.cancel()
        self._stream.close()


class PinnedTransport(httpx.HTTPTransport):
    """Resolves the host once, refuses internal addresses (Refused), and connects to a checked address only.

    The URL is rewritten to the address; the Host header (set when the request was built) and the TLS
    server name (``sni_hostname``, also what the certificate is checked against) stay the host name.
    Connections are not kept alive, so one to a name's address is never reused for another name.
    A send ends by SEND_DEADLINE_S (an httpx.ReadTimeout) and reads at most MAX_RESPONSE_BYTES of the answer.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
        super().__init__(**kwargs)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        original = request.url
        try:
            host, addresses = checked_addresses(str(original))
        except (OSError, UnicodeError, ValueError) as exc:  # the raw host: decoding it can fail too (xn--a)
            host = original.raw_host.decode("ascii", "replace")
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        deadline = _Deadline(SEND_DEADLINE_S)
        request.extensions = {**request.extensions, "trace": deadline.trace}
        if _literal(host) is None:
            request.extensions["sni_hostname"] = host
        error = None
        try:
            for ip in addresses:
                request.url = original.copy_with(host=str(ip))
                try:
                    response = super().handle_request(request)
                except httpx.ConnectError as exc:  # nothing was sent: try the name's next address
                    error = deadline.timeout(exc, request)
                    if deadline.expired:
                        break
                    continue
                except httpx.TransportError as exc:
                    deadline.cancel()
                    raise deadline.timeout(exc, request) from exc
                response.stream = _CappedBody(response.stream, deadline, request)
                return response
            deadline.cancel()
            raise error
        finally:
            request.url = original


class Client(httpx.Client):
    """Raises Refused, not httpx.InvalidURL (which is no httpx.HTTPError), for a URL it cannot parse:
    a stored URL that can never be sent fails its delivery once, recorded, like a refused address."""

    def build_request(self, method, url, **kwargs) -> httpx.Request:
        if isinstance(url, str):
            url = sendable(url)
        return super().build_request(method, url, **kwargs)


def client(*, timeout: float) -> httpx.Client:
    """An httpx client for admin-configured URLs: checked addresses only, no redirects, no environment proxies."""
    return Client(transport=PinnedTransport(), timeout=timeout, follow_redirects=False, trust_env=False)

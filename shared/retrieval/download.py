"""Fetch a document by URL for ingestion, without handing the worker's network to whoever
names the URL.

- http and https only, also after a redirect (at most 5);
- the host is resolved once, and only public addresses are accepted: no loopback, private,
  link-local (169.254.169.254, a cloud's metadata service), multicast, reserved or unspecified
  address, IPv4 inside IPv6 included, unless the caller allows private addresses
  (RAGFLEET_ALLOW_PRIVATE_URLS); the connection goes to the address that was checked, with the
  URL's host in the Host header and as the TLS server name, so a second DNS answer cannot send
  it elsewhere; every redirect is checked the same way;
- one deadline for the whole download, redirects included: every socket operation waits only
  for the time left, so a server that drips bytes is cut off at the deadline;
- a size cap;
- errors say "could not connect" and no more about a failed connection (no port-scanning
  oracle), and carry only printable characters (a server's reason phrase or Location is
  untrusted text bound for a terminal).
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import socket
import ssl
import threading
import time
from urllib.parse import quote, urljoin, urlsplit

from shared.errors import UsageError

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
REDIRECT_CODES = {301, 302, 303, 307, 308}
READ_SIZE = 64 * 1024
# characters a request target keeps as they are; the rest is percent-encoded
_TARGET_SAFE = "/%:@!$&'()*+,;=-._~?"


class DownloadError(UsageError):
    pass


class _TimeUp(TimeoutError):
    """The download's deadline has passed."""


class _CouldNotConnect(Exception):
    """No address of the host accepted a connection (why is not told)."""


def printable(text: object, limit: int = 200) -> str:
    """The text with every non-printable character escaped (\\x1b, \\u202e ...), cut to limit."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))
    return shown if len(shown) <= limit else shown[:limit] + "..."


def check_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(f"{printable(url)}: only http and https URLs can be ingested, "
                            f"not {printable(scheme) or 'a bare path'}")
    if not parts.netloc:
        raise DownloadError(f"{printable(url)}: no host in the URL")
    return url


def is_public(address: str) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local,
    multicast, reserved, unspecified and shared (CGNAT) ones, also as IPv4 inside IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of it
    if ip.version == 6:
        # (NAT64's 64:ff9b::/96 lies in ::/8, reserved)
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
        if ip.ipv4_mapped:
            return True  # judged by its IPv4 address (the mapped range itself is "reserved")
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _TimeUp()
    return left


class _DeadlineMixin:
    """Every send and receive waits at most until the deadline (a timeout shrinking to the
    time left), so no drip of bytes can hold the download past it."""

    deadline = math.inf

    def _arm(self) -> None:
        if self.deadline != math.inf:
            self.settimeout(_left(self.deadline))

    def recv(self, *args, **kwargs):
        self._arm()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        self._arm()
        return super().recv_into(*args, **kwargs)

    def send(self, *args, **kwargs):
        self._arm()
        return super().send(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._arm()
        return super().sendall(*args, **kwargs)


class _DeadlineSocket(_DeadlineMixin, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    def read(self, *args, **kwargs):
        self._arm()
        return super().read(*args, **kwargs)


def _connect(addresses: list[tuple[int, tuple]], deadline: float) -> socket.socket:
    """A connection to the first of the checked addresses that accepts one within the time
    left. Refused, unreachable or silent until the deadline: all the same "could not connect"."""
    for family, sockaddr in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect(sockaddr)
        except OSError:  # refused, unreachable, timed out: try the next address
            sock.close()
            continue
        sock.deadline = deadline
        return sock
    raise _CouldNotConnect()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; the Host header keeps the URL's host."""

    def __init__(self, host: str, port: int, addresses: list, deadline: float):
        super().__init__(host, port)
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; the URL's host is the TLS server name and the
    name its certificate must carry, and the Host header."""

    def __init__(self, host: str, port: int, addresses: list, deadline: float):
        context = ssl.create_default_context()
        context.sslsocket_class = _DeadlineSSLSocket
        super().__init__(host, port, context=context)
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        raw = _connect(self._addresses, self._deadline)
        try:
            raw.settimeout(_left(self._deadline))  # the handshake has the time left, in all
            tls = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        tls.deadline = self._deadline
        self.sock = tls


def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, tuple]]:
    """getaddrinfo within the time left (it has no timeout of its own): (family, sockaddr)."""
    found: dict = {}

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as exc:
            found["error"] = exc

    worker = threading.Thread(target=lookup, name="ragfleet-resolve", daemon=True)
    worker.start()
    worker.join(_left(deadline))
    if worker.is_alive():
        raise _TimeUp()
    addresses = []
    for family, _, _, _, sockaddr in found.get("infos", []):
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    return addresses


def _open(url: str, shown: str, allow_private: bool, deadline: float) -> http.client.HTTPConnection:
    """A connection for one hop, to an address that passed the check."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise DownloadError(f"{shown}: bad port in {printable(url)}") from None
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise DownloadError(f"{shown}: bad host name {printable(parts.hostname)}") from None
    if not host:
        raise DownloadError(f"{shown}: no host in {printable(url)}")
    addresses = _resolve(host, port, deadline)
    if not addresses:
        raise DownloadError(f"{shown}: cannot resolve the host {printable(host)}")
    allowed = [a for a in addresses if allow_private or is_public(a[1][0])]
    if not allowed:
        raise DownloadError(
            f"{shown}: {printable(host)} is not a public address (loopback, private, link-local "
            "or reserved); set RAGFLEET_ALLOW_PRIVATE_URLS=1 on the workers to ingest from it")
    kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    return kind(host, port, allowed, deadline)


def _target(url: str) -> str:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(target, safe=_TARGET_SAFE)


def _read_body(response: http.client.HTTPResponse, shown: str, max_bytes: int) -> bytes:
    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(f"{shown}: {int(declared)} bytes is over the limit of {max_bytes}")
    body = bytearray()
    while chunk := response.read(READ_SIZE):
        body += chunk
        if len(body) > max_bytes:
            raise DownloadError(f"{shown}: larger than the limit of {max_bytes} bytes")
    return bytes(body)


def fetch(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """The body, or DownloadError naming what went wrong. timeout_s bounds the whole download,
    redirects included. allow_private: also fetch from non-public addresses."""
    check_url(url)
    shown = printable(url)
    deadline = time.monotonic() + timeout_s
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            conn = _open(current, shown, allow_private, deadline)
            try:
                conn.request("GET", _target(current), headers={
                    "User-Agent": "ragfleet", "Accept-Encoding": "identity",
                    "Connection": "close"})
                response = conn.getresponse()
                if response.status in REDIRECT_CODES:
                    location = response.getheader("Location")
                    if not location:
                        raise DownloadError(f"{shown}: HTTP {response.status} without a Location")
                    following = urljoin(current, location.strip())
                    target = urlsplit(following)
                    if target.scheme.lower() not in ALLOWED_SCHEMES or not target.netloc:
                        raise DownloadError(
                            f"{shown}: the redirect to {printable(following)} is not allowed: "
                            "only http and https URLs can be ingested")
                    current = following
                    continue
                if not 200 <= response.status < 300:
                    raise DownloadError(
                        f"{shown}: HTTP {response.status} {printable(response.reason, 80)}".rstrip())
                return _read_body(response, shown, max_bytes)
            finally:
                conn.close()
        raise DownloadError(f"{shown}: more than {MAX_REDIRECTS} redirects")
    except DownloadError:
        raise
    except _CouldNotConnect:
        raise DownloadError(f"{shown}: could not connect") from None
    except TimeoutError:  # the deadline, or a socket operation that waited until it
        raise DownloadError(f"{shown}: download took longer than {timeout_s:g} s") from None
    except ssl.SSLCertVerificationError:
        raise DownloadError(f"{shown}: could not connect (TLS certificate not accepted)") from None
    except ssl.SSLError:
        raise DownloadError(f"{shown}: could not connect") from None
    except http.client.HTTPException:
        raise DownloadError(f"{shown}: not a valid HTTP response") from None
    except (OSError, ValueError):
        raise DownloadError(f"{shown}: the connection failed during the download") from None

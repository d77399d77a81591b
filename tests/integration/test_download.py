"""URL ingestion against real HTTP servers on loopback: non-public addresses refused (also
after a redirect, and without a second DNS lookup), one total deadline however slowly a server
drips bytes, messages without control characters or connection-failure details."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from shared.config import Settings
from shared.pipeline import ingest_job
from shared.retrieval import download
from shared.retrieval.download import DownloadError, fetch
from shared.retrieval.embeddings import get_embedder
from shared.state import jobs

pytestmark = pytest.mark.integration

BODY = b"%PDF-1.4 not really a PDF\n"


class RawServer:
    """A loopback TCP server answering every connection with reply(conn, request_head)."""

    def __init__(self, reply, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        self.reply, self.requests, self.tls = reply, [], tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        if self.tls:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            self.requests.append(head.decode("latin-1"))
            try:
                self.reply(conn, head.decode("latin-1"), self)
            except OSError:
                pass

    def close(self):
        self.stopped.set()
        self.sock.close()


def ok(conn, head, server):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (len(BODY), BODY))


def redirect_to(location: str):
    def reply(conn, head, server):
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode("latin-1"))
    return reply


@pytest.fixture()
def servers():
    started = []

    def start(reply, host="127.0.0.1"):
        server = RawServer(reply, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture()
def only_127_0_0_1_is_public(monkeypatch):
    """Stand-in for a public host: 127.0.0.1 passes the check, every other address is judged
    as usual (127.0.0.2 is loopback, so not public)."""
    real = download.is_public
    monkeypatch.setattr(download, "is_public", lambda a: a == "127.0.0.1" or real(a))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_without_the_setting_and_never_contacted(servers, host):
    server = servers(ok)
    with pytest.raises(DownloadError, match="not a public address"):
        fetch(f"http://{host}:{server.port}/doc.pdf", 10_000, 5)
    assert server.requests == []
    assert fetch(f"http://127.0.0.1:{server.port}/doc.pdf", 10_000, 5, allow_private=True) == BODY


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x",
                                 "http://192.168.1.1/x", "https://172.16.0.1/x", "http://[fe80::1]/",
                                 "http://[::1]:9/x", "http://224.0.0.1/x"])
def test_private_and_link_local_addresses_are_refused(url):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="not a public address"):
        fetch(url, 10_000, 5)
    assert time.monotonic() - started < 1  # refused before any connection attempt


def test_a_redirect_to_a_private_address_is_refused(servers, only_127_0_0_1_is_public):
    inner = servers(ok, host="127.0.0.2")
    for target in (f"{inner.url}/secret", "http://169.254.169.254/latest/meta-data/"):
        outer = servers(redirect_to(target))
        with pytest.raises(DownloadError, match="127.0.0.2|169.254.169.254") as info:
            fetch(f"{outer.url}/doc.pdf", 10_000, 5)
        assert "not a public address" in str(info.value)
        assert len(outer.requests) == 1
    assert inner.requests == []


def test_the_checked_address_is_the_one_connected_to(servers, only_127_0_0_1_is_public,
                                                     monkeypatch):
    """One DNS lookup per hop: a second answer (DNS rebinding) is never asked for; the request
    keeps the URL's host name."""
    server = servers(ok)
    lookups = []

    def getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(download.socket, "getaddrinfo", getaddrinfo)
    assert fetch(f"http://docs.example:{server.port}/doc.pdf", 10_000, 5) == BODY
    assert lookups == ["docs.example"]
    assert f"Host: docs.example:{server.port}\r\n" in server.requests[0]


def test_https_goes_to_the_checked_address_with_the_url_host_as_server_name(
        tmp_path, only_127_0_0_1_is_public, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=docs.example", "-addext",
                    "subjectAltName=DNS:docs.example"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = RawServer(ok, tls=context)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's certificate
        monkeypatch.setattr(download.socket, "getaddrinfo", lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))])
        assert fetch(f"https://docs.example:{server.port}/doc.pdf", 10_000, 5) == BODY
        assert names == ["docs.example"]
        assert f"Host: docs.example:{server.port}\r\n" in server.requests[0]
        # the certificate is checked against the URL's host, not the address
        with pytest.raises(DownloadError, match="could not connect"):
            fetch(f"https://other.example:{server.port}/doc.pdf", 10_000, 5)
    finally:
        server.close()
    dripping = RawServer(_drip_body, tls=context)  # the deadline holds over TLS too
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="took longer than 2 s"):
            fetch(f"https://docs.example:{dripping.port}/doc.pdf", 10_000_000, 2)
        assert time.monotonic() - started < 3.5
    finally:
        dripping.close()


def _drip_body(conn, head, server):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    while not server.stopped.is_set():
        conn.sendall(b"x")
        time.sleep(0.1)


def _drip_headers(conn, head, server):
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not server.stopped.is_set():
        conn.sendall(b"X-Slow: y\r\n")
        time.sleep(0.1)


@pytest.mark.parametrize("reply", [_drip_body, _drip_headers], ids=["body", "headers"])
def test_a_dripping_server_is_stopped_at_the_total_deadline(servers, reply):
    server = servers(reply)
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            fetch(f"{server.url}/doc.pdf", 10_000_000, 2, allow_private=True)
        except DownloadError as exc:
            outcome["error"] = str(exc)
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "the download went on past its deadline"
    assert "took longer than 2 s" in outcome["error"]
    assert 1.9 < outcome["elapsed"] < 3.5


def test_the_deadline_covers_redirects_too(servers):
    def slow_redirect(conn, head, server):
        time.sleep(0.8)
        redirect_to(f"{server.url}/again")(conn, head, server)

    server = servers(slow_redirect)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="took longer than 2 s"):
        fetch(f"{server.url}/doc.pdf", 10_000, 2, allow_private=True)
    assert time.monotonic() - started < 3.5


def test_reason_phrase_and_location_are_shown_without_control_characters(servers):
    def bad_reason(conn, head, server):
        conn.sendall(b"HTTP/1.1 404 Not\x1b[2J\x1b]0;owned\x07Found\r\nContent-Length: 0\r\n\r\n")

    with pytest.raises(DownloadError) as info:
        fetch(f"{servers(bad_reason).url}/doc.pdf", 10_000, 5, allow_private=True)
    message = str(info.value)
    assert message.isprintable() and "\x1b" not in message and "\x07" not in message
    assert "HTTP 404 Not\\x1b[2J\\x1b]0;owned\\x07Found" in message

    to_ftp = servers(redirect_to("ftp://x/\x1b[31m"))
    with pytest.raises(DownloadError) as info:
        fetch(f"{to_ftp.url}/d", 10_000, 5, allow_private=True)
    assert str(info.value).isprintable() and "only http and https" in str(info.value)


def test_a_failed_connection_says_only_could_not_connect():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        fetch(f"http://127.0.0.1:{port}/doc.pdf", 10_000, 5, allow_private=True)
    assert str(info.value) == f"http://127.0.0.1:{port}/doc.pdf: could not connect"


def test_redirects_are_followed_and_limited(servers):
    target = servers(ok)
    hop = servers(redirect_to(f"{target.url}/doc.pdf"))
    assert fetch(f"{hop.url}/start", 10_000, 5, allow_private=True) == BODY
    loop = servers(lambda conn, head, server: redirect_to(f"{server.url}/more")(conn, head, server))
    with pytest.raises(DownloadError, match="more than 5 redirects"):
        fetch(f"{loop.url}/start", 10_000, 5, allow_private=True)
    with pytest.raises(DownloadError, match="over the limit"):
        fetch(f"{target.url}/doc.pdf", 10, 5, allow_private=True)


def test_the_worker_refuses_loopback_unless_the_setting_allows_it(redis_client, servers):
    """The cpu worker's ingestion job passes the setting down: failed with the reason without
    it; with RAGFLEET_ALLOW_PRIVATE_URLS=1 the bytes are fetched (and judged as a PDF)."""
    server = servers(ok)
    for allow, needle in ((False, "not a public address"), (True, "PDF")):
        job_id = jobs.new_id()
        jobs.create(redis_client, job_id, "docs", [{"name": "doc.pdf",
                                                    "url": f"{server.url}/doc.pdf"}], {})
        job = ingest_job.run(redis_client, job_id, embedder=get_embedder(),
                             settings=Settings(allow_private_urls=allow))
        assert job["state"] == jobs.FAILED and needle in job["error"], job["error"]
    assert len(server.requests) == 1  # only the allowed run reached the server


def test_the_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAGFLEET_ALLOW_PRIVATE_URLS", "1")
    assert Settings().allow_private_urls
    monkeypatch.delenv("RAGFLEET_ALLOW_PRIVATE_URLS")
    assert not Settings().allow_private_urls

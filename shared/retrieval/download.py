"""Fetch a document by URL for ingestion: http(s) only, redirects only to http(s), a size cap
and a time limit."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from shared.errors import UsageError

ALLOWED_SCHEMES = ("http", "https")


class DownloadError(UsageError):
    pass


def check_url(url: str) -> str:
    scheme = urlparse(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(f"{url}: only http and https URLs can be ingested, "
                            f"not {scheme or 'a bare path'}")
    if not urlparse(url).netloc:
        raise DownloadError(f"{url}: no host in the URL")
    return url


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)  # never follow a redirect to file:, ftp: or anything else
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """The body, or DownloadError naming what went wrong."""
    check_url(url)
    opener = urllib.request.build_opener(_SafeRedirects())
    deadline = time.monotonic() + timeout_s
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "ragfleet"}),
                         timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"{url}: {int(declared)} bytes is over the limit of {max_bytes}")
            body = bytearray()
            while chunk := response.read(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise DownloadError(f"{url}: larger than the limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise DownloadError(f"{url}: download took longer than {timeout_s:.0f} s")
            return bytes(body)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    except (TimeoutError, OSError, ValueError) as exc:
        raise DownloadError(f"{url}: {exc}") from None

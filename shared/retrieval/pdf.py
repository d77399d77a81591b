"""PDF bytes to text per page (pypdf), with one clear error for each way a PDF can be unusable."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from shared.errors import UsageError

# pypdf logs every recoverable oddity of a damaged file as a warning; the errors below say it.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class BadDocument(UsageError):
    """A document that cannot be ingested: says which and why."""


@dataclass(frozen=True)
class Page:
    number: int  # from 1, as a reader counts
    text: str


def extract_pages(data: bytes, name: str, password: str | None = None,
                  progress=None) -> list[Page]:
    """Text of every page; `progress(done, total)` every 10 pages and at the end. Raises
    BadDocument for an empty, non-PDF, corrupt, locked or image-only file."""
    return list(iter_pages(data, name, password, progress))


def iter_pages(data: bytes, name: str, password: str | None = None, progress=None):
    """extract_pages one page at a time, so a consumer can work on the first pages while the
    rest are read. The checks that need every page (no pages, no text at all) raise after
    the last one."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    if not data:
        raise BadDocument(f"{name}: the file is empty")
    if b"%PDF-" not in data[:1024]:
        raise BadDocument(f"{name}: not a PDF (no %PDF- header)")
    count = with_text = 0
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(password or ""):
            raise BadDocument(f"{name}: the PDF is encrypted and needs a password")
        total = len(reader.pages)
        for i, page in enumerate(reader.pages, start=1):
            text = _clean(page.extract_text() or "")
            count += 1
            with_text += bool(text.strip())
            yield Page(i, text)
            if progress and (i % 10 == 0 or i == total):
                progress(i, total)
    except BadDocument:
        raise
    except FileNotDecryptedError:
        raise BadDocument(f"{name}: the PDF is encrypted and needs a password") from None
    except DependencyError as exc:
        raise BadDocument(f"{name}: cannot decrypt the PDF: {exc}") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError, AssertionError) as exc:
        raise BadDocument(f"{name}: corrupt or truncated PDF ({type(exc).__name__}: {exc})") from None
    if not count:
        raise BadDocument(f"{name}: the PDF has no pages")
    if not with_text:
        raise BadDocument(
            f"{name}: no extractable text in {count} page(s) (scanned images? run OCR first)"
        )


def _clean(text: str) -> str:
    """pypdf ends lines with ' \\n'; keep the line structure, drop trailing blanks and NULs."""
    return "\n".join(line.rstrip() for line in text.replace("\x00", "").splitlines())

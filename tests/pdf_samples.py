"""Broken and hostile PDFs for tests, made from the real Northwind PDF or written by hand."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from tests.helpers import ROOT

NORTHWIND = ROOT / "data" / "northwind"
STANDARD_PDF = NORTHWIND / "Northwind_Standard_Benefits_Details.pdf"
PLUS_PDF = NORTHWIND / "Northwind_Health_Plus_Benefits_Details.pdf"
# A sentence that appears on exactly one page of the Standard plan (page 7, balance billing).
PAGE7_PHRASE = "requires you to pay the balance billing amount up front"


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF file from numbered object bodies (1-based), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def image_only_pdf() -> bytes:
    """One page showing a scanned-looking grey image and no text at all."""
    pixels = zlib.compress(bytes(range(256)) * 64)  # 128x128 greyscale gradient
    content = b"q 400 0 0 400 100 200 cm /Im0 Do Q"
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width 128 /Height 128 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % len(pixels)
        + pixels + b"\nendstream",
    ])


def encrypted_pdf(user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(STANDARD_PDF))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def truncated_pdf() -> bytes:
    data = STANDARD_PDF.read_bytes()
    return data[: len(data) * 2 // 5]


def write_samples(folder: Path) -> dict[str, Path]:
    """Every bad (and one good-but-locked) sample, written to files."""
    samples = {
        "not_a_pdf.pdf": b"These are meeting notes, saved as text with a .pdf name.\n" * 20,
        "empty.pdf": b"",
        "truncated.pdf": truncated_pdf(),
        "scanned.pdf": image_only_pdf(),
        "locked.pdf": encrypted_pdf("secret"),
        "empty_password.pdf": encrypted_pdf(""),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in samples.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def first_pages_pdf(pages: int = 12, source: Path = STANDARD_PDF) -> bytes:
    """The first pages of a Northwind plan: a real PDF that ingests in seconds."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(source).pages[:pages]:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()

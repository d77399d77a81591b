"""Split page text into overlapping chunks that remember their document and page.

A recursive character splitter like the study's (LangChain's): try paragraph breaks, then lines,
then sentences, then words, then characters, so chunks end at natural boundaries. Each page is
split on its own, so every chunk carries exactly the page it came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shared.retrieval.pdf import Page

SEPARATORS = ("\n\n", "\n", ". ", " ", "")


@dataclass(frozen=True)
class Chunk:
    document: str
    page: int
    text: str

    def to_json(self) -> dict:
        return asdict(self)


def split_text(text: str, size: int, overlap: int, separators=SEPARATORS) -> list[str]:
    """Pieces of at most `size` characters, consecutive ones sharing up to `overlap`."""
    if overlap >= size:
        raise ValueError("chunk overlap must be smaller than chunk size")
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    sep = next((s for s in separators if s and s in text), "")
    pieces = list(text) if sep == "" else [p + sep for p in text.split(sep)]
    rest = separators[separators.index(sep) + 1:] if sep in separators else ("",)
    atoms: list[str] = []
    for piece in pieces:  # a piece still too long is split with the finer separators
        atoms.extend(split_text(piece, size, overlap, rest) if len(piece) > size else [piece])
    return _merge(atoms, size, overlap)


def _merge(atoms: list[str], size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    window: list[str] = []
    length = 0
    for atom in atoms:
        if window and length + len(atom) > size:
            chunks.append("".join(window).strip())
            # keep a tail of the window as the overlap for the next chunk
            while window and (length > overlap or length + len(atom) > size):
                length -= len(window.pop(0))
        window.append(atom)
        length += len(atom)
    if window:
        chunks.append("".join(window).strip())
    return [c for c in chunks if c]


def chunk_pages(document: str, pages: list[Page], size: int, overlap: int) -> list[Chunk]:
    return [Chunk(document, page.number, piece)
            for page in pages for piece in split_text(page.text, size, overlap)]

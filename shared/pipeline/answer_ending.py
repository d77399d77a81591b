"""An answer stopped at max_tokens ends mid-sentence; it is trimmed back to its last complete
sentence, so no stored answer ends in a broken one (the dropped tail is kept beside it).

A sentence ends at . ! or ? (closing quotes, brackets or ** may follow) before white space.
Not an end: a list's number ("2. ") or a one-letter abbreviation ("e.g. ", "U.S. "). An answer
without a complete sentence is kept whole: something is better than nothing.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?][\"')\]*]*(?=\s|$)")
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*\d+\.$")
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:[A-Za-z]\.)+$")


def _is_sentence_end(text: str, end: int) -> bool:
    before = text[:end + 1]  # through the stop mark
    return not (_LIST_NUMBER.search(before) or _ABBREVIATION.search(before))


def trim_to_last_sentence(text: str) -> tuple[str, str]:
    """(kept, dropped): `text` cut after its last complete sentence; (text, "") when it has
    none, or when it already ends with one."""
    stripped = text.rstrip()
    ends = [m.end() for m in _SENTENCE_END.finditer(stripped) if _is_sentence_end(stripped,
                                                                                  m.start())]
    if not ends or ends[-1] == len(stripped):
        return text, ""
    return stripped[:ends[-1]], text[ends[-1]:]

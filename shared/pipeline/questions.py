"""Questions files: CSV with a header row, or JSONL; fields `question`, optional `reference`
(the expert answer; `truth` and `answer` are accepted too), optional `id`, and optional checks
besides cosine (shared.pipeline.checks): `contains` (a string or a list of strings; in CSV,
several separated by `|`), `regex` (a Python regular expression) and `exact`.

Every problem is reported with its line number, before anything is enqueued."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from shared.errors import UsageError

MAX_QUESTION_CHARS = 4000
MAX_FILE_BYTES = 50 * 1024 * 1024
REFERENCE_FIELDS = ("reference", "truth", "answer")
# Reference answers in the Northwind set end with citations such as [file.pdf#page=7]
CITATION = re.compile(r"\s*\[([^\[\]]+?)#page=(\d+)\]")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference: str | None
    sources: tuple[str, ...] = ()  # "file.pdf#page=7" citations taken out of the reference
    contains: tuple[str, ...] = ()  # checks besides cosine (shared.pipeline.checks)
    regex: str | None = None
    exact: str | None = None

    def to_json(self) -> dict:
        """The stored record; a check is there only when given (records without one, older
        batches' included, mean no check)."""
        record = {"id": self.id, "question": self.question, "reference": self.reference,
                  "sources": list(self.sources)}
        if self.contains:
            record["contains"] = list(self.contains)
        if self.regex is not None:
            record["regex"] = self.regex
        if self.exact is not None:
            record["exact"] = self.exact
        return record


class BadQuestions(UsageError):
    pass


def stable_id(text: str) -> str:
    return "q-" + hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()[:10]


def split_citations(reference: str) -> tuple[str, tuple[str, ...]]:
    sources = tuple(f"{m.group(1).strip()}#page={m.group(2)}" for m in CITATION.finditer(reference))
    return CITATION.sub("", reference).strip(), sources


def read_questions(path: Path) -> list[Question]:
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadQuestions(f"{path}: no such file") from None
    except OSError as exc:
        raise BadQuestions(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadQuestions(f"{name}: {len(data)} bytes is over the limit of {MAX_FILE_BYTES}")
    if b"\0" in data:
        raise BadQuestions(f"{name}: a binary file, not CSV or JSONL text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadQuestions(f"{name}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise BadQuestions(f"{name}: the file is empty")
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{")
    rows = _jsonl_rows(text, name) if is_jsonl else _csv_rows(text, name)
    return _to_questions(rows, name, is_csv=not is_jsonl)


def _jsonl_rows(text: str, name: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadQuestions(f"{name} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise BadQuestions(f"{name} line {number}: expected a JSON object")
        yield number, row


def _csv_rows(text: str, name: str):
    csv.field_size_limit(MAX_FILE_BYTES)  # let our own length check name an oversize question
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "question" not in fields:
        found = ", ".join(f for f in fields if f) or "none"
        raise BadQuestions(f"{name}: no 'question' column in the header row (found: {found})")
    reader.fieldnames = fields
    try:
        for row in reader:
            if None in row:
                raise BadQuestions(f"{name} line {reader.line_num}: more fields than the header")
            yield reader.line_num, row
    except csv.Error as exc:
        raise BadQuestions(f"{name} line {reader.line_num}: {exc}") from None


def _checks(row: dict, where: str, is_csv: bool) -> dict:
    """The row's checks, validated: contains (tuple of str), regex (compiles), exact (str).
    An empty value (an empty CSV cell, JSON null or "") is no check."""
    found: dict = {}
    contains = row.get("contains")
    if contains not in (None, "", []):
        if is_csv:
            contains = contains.split("|")
        elif isinstance(contains, str):
            contains = [contains]
        elif not isinstance(contains, list) or not all(isinstance(c, str) for c in contains):
            raise BadQuestions(f"{where}: 'contains' must be a string or a list of strings")
        if any(not c.strip() for c in contains):
            raise BadQuestions(f"{where}: 'contains' has an empty string")
        found["contains"] = tuple(c.strip() for c in contains)
    for field in ("regex", "exact"):
        value = row.get(field)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise BadQuestions(f"{where}: {field!r} must be a string")
        found[field] = value
    if "regex" in found:
        try:
            re.compile(found["regex"])
        except re.error as exc:
            raise BadQuestions(f"{where}: bad regex {found['regex']!r}: {exc}") from None
    return found


def _to_questions(rows, name: str, is_csv: bool = False) -> list[Question]:
    parsed: list[tuple[str | None, str, str | None, tuple[str, ...], dict]] = []
    given_on: dict[str, int] = {}  # explicit id -> its line
    for number, row in rows:
        text = row.get("question")
        if not isinstance(text, str) or not text.strip():
            raise BadQuestions(f"{name} line {number}: no question text")
        text = text.strip()
        if len(text) > MAX_QUESTION_CHARS:
            raise BadQuestions(f"{name} line {number}: the question has {len(text)} characters, "
                               f"over the limit of {MAX_QUESTION_CHARS}")
        reference = next((row[f] for f in REFERENCE_FIELDS if row.get(f) not in (None, "")), None)
        if reference is not None and not isinstance(reference, str):
            raise BadQuestions(f"{name} line {number}: the reference must be text")
        sources: tuple[str, ...] = ()
        if reference:
            reference, sources = split_citations(reference)
        given = row.get("id")
        qid = str(given).strip() if given not in (None, "") else None
        if qid is not None:
            if qid in given_on:
                raise BadQuestions(f"{name} line {number}: duplicate id {qid!r} "
                                   f"(first on line {given_on[qid]})")
            given_on[qid] = number
        parsed.append((qid, text, reference or None, sources,
                       _checks(row, f"{name} line {number}", is_csv)))
    if not parsed:
        raise BadQuestions(f"{name}: no questions in the file")
    # Generated ids: the stable id of the text, "-2", "-3"... for its repeats, skipping every id
    # already taken (explicit ones anywhere in the file included), so no two questions share one.
    taken = set(given_on)
    next_suffix: dict[str, int] = {}
    questions = []
    for qid, text, reference, sources, found in parsed:
        if qid is None:
            base = stable_id(text)
            n = next_suffix.get(base, 1)
            qid = base if n == 1 else f"{base}-{n}"
            while qid in taken:
                n += 1
                qid = f"{base}-{n}"
            next_suffix[base] = n + 1
            taken.add(qid)
        questions.append(Question(qid, text, reference, sources, **found))
    return questions

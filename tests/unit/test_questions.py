import pytest

from shared.pipeline.questions import BadQuestions, read_questions, split_citations, stable_id

pytestmark = pytest.mark.unit


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_csv_with_header_and_optional_fields(tmp_path):
    path = write(tmp_path, "q.csv", 'id,question,reference\na1,"What, exactly?",Yes.\n,Second?,\n')
    questions = read_questions(path)
    assert [(q.id, q.question, q.reference) for q in questions] == [
        ("a1", "What, exactly?", "Yes."), (stable_id("Second?"), "Second?", None)]


def test_jsonl_with_truth_and_citations(tmp_path):
    line = '{"question": "Q?", "truth": "It is covered. [Plan.pdf#page=7][Plan.pdf#page=9]"}\n'
    (q,) = read_questions(write(tmp_path, "q.jsonl", line))
    assert q.reference == "It is covered."
    assert q.sources == ("Plan.pdf#page=7", "Plan.pdf#page=9")


def test_ids_are_stable_across_runs_and_spacing():
    assert stable_id("What is  covered?") == stable_id("what is covered?")


def test_identical_text_without_ids_keeps_both(tmp_path):
    questions = read_questions(write(tmp_path, "q.csv", "question\nSame?\nSame?\n"))
    assert len({q.id for q in questions}) == 2


@pytest.mark.parametrize("name, content, needle", [
    ("empty.csv", "", "empty"),
    ("blank.jsonl", "\n\n", "empty"),
    ("binary.csv", b"\x00\x01\x02question\n", "binary"),
    ("latin1.csv", "question\nqu\xe9 es?\n".encode("latin-1"), "not UTF-8"),
    ("cols.csv", "prompt,expected\nhi,there\n",
     "no 'question' column in the header row (found: prompt, expected)"),
    ("bad.jsonl", '{"question": "ok"}\n{"question": \n', "line 2: not valid JSON"),
    ("list.jsonl", '["question"]\n', "expected a JSON object"),
    ("noq.jsonl", '{"reference": "x"}\n', "line 1: no question text"),
    ("dup.csv", "id,question\na,one\na,two\n", "duplicate id 'a' (first on line 2)"),
    ("long.csv", "question\n" + "x" * 1_000_000 + "\n", "over the limit"),
    ("extra.csv", "question\na,b,c\n", "more fields than the header"),
])
def test_bad_files_name_the_problem(tmp_path, name, content, needle):
    with pytest.raises(BadQuestions, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_questions(write(tmp_path, name, content))


def test_missing_file(tmp_path):
    with pytest.raises(BadQuestions, match="no such file"):
        read_questions(tmp_path / "nope.csv")


def test_split_citations_without_any():
    assert split_citations("plain") == ("plain", ())


def test_generated_ids_never_collide_with_explicit_ones(tmp_path):
    # issue 14: the repeat of "a" was numbered -3 like the explicit id of the line before
    base = stable_id("a")
    lines = ['{"question": "a"}', f'{{"id": "{base}-3", "question": "b"}}', '{"question": "a"}',
             '{"question": "a"}', f'{{"id": "{base}-2", "question": "c"}}']
    questions = read_questions(write(tmp_path, "q.jsonl", "\n".join(lines) + "\n"))
    ids = [q.id for q in questions]
    assert len(set(ids)) == len(ids)
    assert ids == [base, f"{base}-3", f"{base}-4", f"{base}-5", f"{base}-2"]


def test_ids_without_clashes_stay_as_before(tmp_path):
    questions = read_questions(write(tmp_path, "q.csv", "question\nSame?\nOther?\nsame?\nSame?\n"))
    base = stable_id("Same?")
    assert [q.id for q in questions] == [base, stable_id("Other?"), f"{base}-2", f"{base}-3"]


def test_two_equal_explicit_ids_name_the_line(tmp_path):
    path = write(tmp_path, "q.jsonl", '{"question": "a"}\n{"id": "x", "question": "b"}\n'
                                      '{"question": "c"}\n{"id": "x", "question": "d"}\n')
    with pytest.raises(BadQuestions, match=r"^q.jsonl line 4: duplicate id 'x' \(first on line 2\)$"):
        read_questions(path)


# -- checks besides cosine (issue 15) -----------------------------------------------------------

def test_checks_from_jsonl_and_csv(tmp_path):
    lines = ['{"question": "a", "contains": "Two  Thousand", "regex": "\\\\d+", "exact": "yes"}',
             '{"question": "b", "contains": ["x", " y "]}', '{"question": "c", "contains": null}']
    a, b, c = read_questions(write(tmp_path, "q.jsonl", "\n".join(lines) + "\n"))
    assert (a.contains, a.regex, a.exact) == (("Two  Thousand",), r"\d+", "yes")
    assert b.contains == ("x", "y") and (b.regex, b.exact) == (None, None)
    assert (c.contains, c.regex, c.exact) == ((), None, None)
    # in CSV, several strings are separated by "|"; an empty cell is no check
    path = write(tmp_path, "q.csv", "question,contains,regex,exact\n"
                                    'd,"2,000 | per person",^\\$,\ne,,,No.\n')
    d, e = read_questions(path)
    assert (d.contains, d.regex, d.exact) == (("2,000", "per person"), r"^\$", None)
    assert (e.contains, e.regex, e.exact) == ((), None, "No.")


def test_stored_records_carry_only_the_checks_given(tmp_path):
    path = write(tmp_path, "q.jsonl", '{"id": "a", "question": "A?", "contains": ["x", "y"], '
                                      '"regex": "z"}\n{"id": "b", "question": "B?"}\n')
    a, b = read_questions(path)
    assert a.to_json() == {"id": "a", "question": "A?", "reference": None, "sources": [],
                           "contains": ["x", "y"], "regex": "z"}
    assert b.to_json() == {"id": "b", "question": "B?", "reference": None, "sources": []}


@pytest.mark.parametrize("name, content, message", [
    ("re.jsonl", '{"question": "a"}\n{"question": "b", "regex": "(unclosed"}\n',
     "re.jsonl line 2: bad regex '(unclosed': missing ), unterminated subpattern at position 0"),
    ("re.csv", "question,regex\nfine,[a-z]+\nbad,[z-a]\n",
     "re.csv line 3: bad regex '[z-a]': bad character range z-a at position 1"),
    ("type.jsonl", '{"question": "a", "contains": 3}\n',
     "type.jsonl line 1: 'contains' must be a string or a list of strings"),
    ("list.jsonl", '{"question": "a", "contains": ["ok", 2]}\n',
     "list.jsonl line 1: 'contains' must be a string or a list of strings"),
    ("empty.jsonl", '{"question": "a", "contains": ["ok", " "]}\n',
     "empty.jsonl line 1: 'contains' has an empty string"),
    ("pipe.csv", "question,contains\na,x||y\n", "pipe.csv line 2: 'contains' has an empty string"),
    ("regex.jsonl", '{"question": "a", "regex": ["x"]}\n',
     "regex.jsonl line 1: 'regex' must be a string"),
    ("exact.jsonl", '{"question": "a", "exact": 42}\n',
     "exact.jsonl line 1: 'exact' must be a string"),
])
def test_bad_checks_name_the_file_line_and_problem(tmp_path, name, content, message):
    with pytest.raises(BadQuestions) as caught:
        read_questions(write(tmp_path, name, content))
    assert str(caught.value) == message

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

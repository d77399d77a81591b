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

"""Questions written from the user's own documents (`ragfleet questions generate`): passages
sampled across a collection's documents and pages, one task per passage on the generating
model's queue, each writing one question with its reference answer and the page it came from.

The producer samples the passages (spread over every document, each document's pages in equal
strata, reproducible with the seed) and stores them with the job; a model pool on any host
writes one item per passage (greedy, so the same model and passage give the same item) and
stores it once; the producer filters the items (shared.pipeline.question_filters) and writes an
ordinary questions file, each item marked with what generated it."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable

import redis

from shared.errors import UsageError
from shared.llm.engine import Engine
from shared.llm.requests import ChatMessage, GenerationRequest
from shared.retrieval.chunking import Chunk
from shared.state import collection_store, generations

log = logging.getLogger(__name__)

PROMPT_LABEL = "generate@v1"  # stored with each item: a changed prompt is a new label
MAX_TOKENS = 192
# a passage shorter than this rarely holds a question worth asking (a heading, a page number)
MIN_PASSAGE_CHARS = 300
# more passages than items asked for: the filters drop some
OVERSAMPLE = 1.6

SYSTEM = ("You write questions that a reader of a document would ask, each with its correct "
          "answer taken from the document.")
USER = """Passage from {document}, page {page}:
\"\"\"
{text}
\"\"\"

Write one question that this passage answers, as a reader who has not seen the passage would
ask it (do not copy sentences from the passage, do not mention "the passage"), and its answer
in one to three complete sentences, using only facts stated in the passage.
Reply in exactly this form:
Question: <the question>
Answer: <the answer>"""

ITEM = re.compile(r"question\s*:\s*(?P<question>.+?)\s*\n+\s*\**\s*answer\s*:\s*(?P<answer>.+)",
                  re.IGNORECASE | re.DOTALL)


def sample_passages(chunks: list[Chunk], n: int, seed: int) -> list[dict]:
    """About n x OVERSAMPLE passages (at most one per page while pages last), spread over the
    documents in proportion to their pages and over each document's pages in equal strata;
    the same chunks and seed give the same passages."""
    rng = random.Random(seed)
    usable = [i for i, c in enumerate(chunks) if len(c.text.strip()) >= MIN_PASSAGE_CHARS] or \
        list(range(len(chunks)))
    pages: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in usable:
        pages[chunks[i].document][chunks[i].page].append(i)
    want = min(len(usable), max(1, round(n * OVERSAMPLE)))
    total_pages = sum(len(p) for p in pages.values())
    picked: list[int] = []
    for document in sorted(pages):
        by_page = pages[document]
        numbers = sorted(by_page)
        quota = max(1, round(want * len(numbers) / total_pages))
        strata = min(quota, len(numbers))
        for s in range(strata):  # one page from each equal slice of the document
            page = rng.choice(numbers[s * len(numbers) // strata:(s + 1) * len(numbers) // strata])
            picked.append(rng.choice(by_page[page]))
        # a quota larger than the pages: more chunks of pages already used
        taken = set(picked)
        rest = [i for p in numbers for i in by_page[p] if i not in taken]
        picked += rng.sample(rest, min(len(rest), quota - strata))
    rng.shuffle(picked)
    return [{"document": chunks[i].document, "page": chunks[i].page, "chunk": i,
             "text": chunks[i].text} for i in picked[:want]]


def collection_chunks(client: redis.Redis, collection: str) -> tuple[int, list[Chunk]]:
    """The current version of a collection and its chunks; an unknown or empty collection is a
    usage error."""
    meta, raw = collection_store.load_part(client, collection, "chunks")
    chunks = [Chunk(**c) for c in json.loads(raw)]
    if not chunks:
        raise UsageError(f"collection {collection!r} has no text to write questions from")
    return meta.version, chunks


def questions_file(job_id: str, job: dict, kept: list[dict]) -> str:
    """The kept items as an ordinary questions file (JSONL): the reference cites its page, so
    retrieval hit rates count, and `generated_by` says where each item came from."""
    lines = []
    for number, item in enumerate(kept, start=1):
        passage = item["passage"]
        lines.append(json.dumps({
            "id": f"gen-{number:03d}",
            "question": item["question"],
            "reference": f"{item['answer']} [{passage['document']}#page={passage['page']}]",
            "generated_by": {"model": item["model"], "prompt": item["prompt"],
                             "passage": passage, "job": job_id,
                             "collection": job["collection"], "version": job["version"],
                             "seed": job["seed"]},
        }))
    return "".join(line + "\n" for line in lines)


def messages(passage: dict) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=USER.format(**passage))]


def parse_item(text: str) -> tuple[str, str] | None:
    """(question, answer) from a reply in the asked form; None when it is not."""
    found = ITEM.search((text or "").replace("\r", ""))
    if not found:
        return None
    question = " ".join(found.group("question").strip(" *\"").split())
    answer = " ".join(found.group("answer").strip(" *\"").split())
    return (question, answer) if question and answer else None


def generate_item(client: redis.Redis, engine: Callable[[], Engine], job_id: str, index: int,
                  budget_s: float, limit_s: float,
                  over_time: tuple[type[BaseException], ...] = ()) -> dict | None:
    """Write the item of passage `index` with this pool's model and store it (or its failure).
    Returns it; None when an item is stored already (a duplicate delivery)."""
    if generations.item(client, job_id, index) is not None:
        return None
    job = generations.get(client, job_id)
    passage = job["passages"][index]
    started = time.perf_counter()
    record = {"index": index, "model": job["model"], "prompt": PROMPT_LABEL,
              "passage": {k: passage[k] for k in ("document", "page", "chunk")}}
    try:
        loaded = engine()
        if loaded.model.name != job["model"]:
            raise UsageError(f"an item for {job['model']!r} reached the pool of "
                             f"{loaded.model.name!r}")
        reply = loaded.generate(GenerationRequest(
            model=job["model"], messages=messages(passage), max_tokens=MAX_TOKENS,
            temperature=0.0, seed=job["seed"], repeat_penalty=1.1,
            time_budget_s=max(1.0, budget_s - (time.perf_counter() - started))))
        if reply.finish_reason == "time_limit":
            raise TimeoutError(f"generation exceeded the time limit of {limit_s:.0f} s")
    except (TimeoutError, *over_time):
        record["error"] = f"generation exceeded the time limit of {limit_s:.0f} s"
    except Exception as exc:  # the model failed to load, llama.cpp error
        log.warning("generating item %s of %s failed: %s", index, job_id, exc)
        record["error"] = str(exc).strip() or type(exc).__name__
    else:
        record.update(raw=reply.text, finish_reason=reply.finish_reason,
                      response_s=reply.total_s)
        parsed = parse_item(reply.text)
        if parsed:
            record["question"], record["answer"] = parsed
    generations.save_item(client, job_id, record)
    return record


def record_failure(client: redis.Redis, job_id: str, index: int, reason: str) -> None:
    """An item whose pool process was killed for good: stored failed, so the job finishes."""
    job = generations.get(client, job_id)
    generations.save_item(client, job_id, {"index": index, "model": job["model"],
                                           "prompt": PROMPT_LABEL, "error": reason})

"""An LLM judge, after the fact (`ragfleet judge BATCH --model J`): a pool's model grades each
answered result of a finished batch against its reference answer, 1 (wrong) to 5 (fully right).

The grade is stored apart from the results (shared.state.judgements), labelled with the judging
model, and never touches the cosine score. Judging is greedy (temperature 0, seed 0, no repeat
penalty) and short (MAX_TOKENS new tokens): the same judge gives the same grade. The grade is
the first standalone digit 1-5 of the reply; a reply without one is stored as a failed
judgement with its raw text."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import redis

from shared.errors import UsageError
from shared.llm.engine import Engine
from shared.llm.requests import ChatMessage, GenerationRequest
from shared.state import batch_store, judgements

log = logging.getLogger(__name__)

PROMPT_LABEL = "judge@v1"  # stored with each judgement: a changed prompt is a new label
MAX_TOKENS = 16
GRADE = re.compile(r"(?<!\d)[1-5](?!\d)")
# Text cut to this many characters per field until the prompt fits the judge's context window
CUTS = (4000, 2000, 1000, 500, 250)

SYSTEM = ("You are a strict grader. You compare a candidate answer with a reference answer to "
          "the same question and reply with a single digit from 1 to 5, nothing else.")
USER = """Question: {question}

Reference answer: {reference}

Candidate answer: {answer}

How well does the candidate answer agree with the reference answer?
5 = fully right, 4 = mostly right, 3 = partly right, 2 = mostly wrong, 1 = wrong or unrelated.
Reply with one digit from 1 to 5.
Grade:"""


class JudgeFailed(Exception):
    """The judgement could not be made (the prompt cannot fit, the time ran out)."""


def new_run() -> str:
    return "j-" + uuid.uuid4().hex[:10]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def grading_messages(question: str, reference: str, answer: str,
                     limit: int = CUTS[0]) -> list[ChatMessage]:
    """The grading prompt; each text cut to `limit` characters."""
    return [ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=USER.format(
                question=_cut(question, limit), reference=_cut(reference, limit),
                answer=_cut(" ".join(answer.split()), limit)))]


def fit_messages(engine: Engine, question: str, reference: str, answer: str) -> list[ChatMessage]:
    """The longest cut of the grading prompt that leaves MAX_TOKENS in the context window."""
    for limit in CUTS:
        messages = grading_messages(question, reference, answer, limit)
        if engine.count_tokens(messages) + MAX_TOKENS <= engine.model.n_ctx:
            return messages
    raise JudgeFailed(f"the grading prompt does not fit {engine.model.name}'s n_ctx of "
                      f"{engine.model.n_ctx}")


def parse_grade(text: str) -> int | None:
    """The first standalone digit 1-5 of the reply ("Grade: 4/5" -> 4); None without one."""
    found = GRADE.search(text or "")
    return int(found.group()) if found else None


def judgement(question_id: str, model: str, judge_model: str, run: str, grade: int | None = None,
              raw: str | None = None, error: str | None = None, **extra) -> dict:
    """A stored judgement: a grade, or an error (then `raw` keeps an unparseable reply)."""
    return {"question_id": question_id, "model": model, "judge_model": judge_model, "run": run,
            "grade": grade, "raw": raw, "error": error, "prompt": PROMPT_LABEL,
            "judged_at": time.time(), **extra}


def is_judgeable(result: dict) -> bool:
    """An answered result with a reference to grade it against."""
    return (result.get("error") is None and not result.get("cancelled")
            and bool(result.get("answer")) and bool(result.get("reference")))


# -- the producer's side: what to send -----------------------------------------------------------

def plan(client: redis.Redis, batch_id: str, judge_model: str,
         models: list[str] | None = None) -> tuple[list[tuple[str, str]], int]:
    """The (question id, model) pairs to send to judge_model's pool: the answered results with a
    reference of `models` (all the batch's by default) that it has not graded yet. Returns them
    and how many of those results are graded already. A batch still in progress, a model not in
    it, or nothing to judge is a usage error."""
    batch = batch_store.get(client, batch_id)  # UnknownBatch for an unknown id
    if batch["status"] not in batch_store.FINISHED:
        raise UsageError(f"batch {batch_id} is still {batch['status']}: judge it when it is done")
    models = list(models or batch["models"])
    unknown = [m for m in models if m not in batch["models"]]
    if unknown:
        raise UsageError(f"model {unknown[0]!r} is not in batch {batch_id} "
                         f"(its models: {', '.join(batch['models'])})")
    answered = [r for r in batch_store.results(client, batch_id)
                if r["model"] in models and is_judgeable(r)]
    if not answered:
        raise UsageError(f"batch {batch_id} has no answer with a reference to judge "
                         f"for {', '.join(models)}")
    graded = {pair for pair, j in judgements.of_judge(client, batch_id, judge_model).items()
              if j.get("grade") is not None}
    order = {m: i for i, m in enumerate(batch["models"])}
    todo = sorted({(r["question_id"], r["model"]) for r in answered} - graded,
                  key=lambda p: (order[p[1]], p[0]))
    return todo, len(answered) - len(todo)


def settled(client: redis.Redis, batch_id: str, judge_model: str, pairs: list[tuple[str, str]],
            run: str) -> int:
    """How many of the pairs sent in `run` are judged: by that run, or graded by any."""
    found = judgements.of_judge(client, batch_id, judge_model)
    return sum(1 for pair in pairs if (j := found.get(pair)) is not None
               and (j.get("run") == run or j.get("grade") is not None))


def summary(client: redis.Redis, batch_id: str, judge_model: str) -> list[dict]:
    """Per answering model: how many answers this judge graded, failed to grade, and the mean."""
    by_model: dict[str, list[dict]] = {}
    for j in judgements.of_judge(client, batch_id, judge_model).values():
        by_model.setdefault(j["model"], []).append(j)
    order = batch_store.get(client, batch_id)["models"]
    rows = []
    for model in [m for m in order if m in by_model]:
        grades = [j["grade"] for j in by_model[model] if j.get("grade") is not None]
        rows.append({"model": model, "judge_model": judge_model, "judged": len(grades),
                     "failed": len(by_model[model]) - len(grades),
                     "judge_mean": sum(grades) / len(grades) if grades else None})
    return rows


# -- the judge's pool: one judgement -------------------------------------------------------------

def judge_answer(client: redis.Redis, engine: Callable[[], Engine], batch_id: str,
                 question_id: str, model: str, judge_model: str, run: str, budget_s: float,
                 limit_s: float, over_time: tuple[type[BaseException], ...] = ()) -> dict | None:
    """Grade one stored answer with this pool's model and store the judgement (graded or failed
    with its reason). Returns it; None for a duplicate (a graded one is stored already)."""
    existing = judgements.get(client, batch_id, judge_model, question_id, model)
    if existing is not None and existing.get("grade") is not None:
        return None
    result = judgements.stored_result(client, batch_id, question_id, model)
    if result is None or not is_judgeable(result):
        record = judgement(question_id, model, judge_model, run,
                           error="no answer with a reference to judge")
        judgements.save(client, batch_id, judge_model, record)
        return record
    started = time.perf_counter()
    try:
        loaded = engine()
        if loaded.model.name != judge_model:
            raise UsageError(f"a judgement by {judge_model!r} reached the pool of "
                             f"{loaded.model.name!r}")
        messages = fit_messages(loaded, result["question"], result["reference"], result["answer"])
        reply = loaded.generate(GenerationRequest(
            model=judge_model, messages=messages, max_tokens=MAX_TOKENS,
            temperature=0.0, seed=0, repeat_penalty=1.0,
            time_budget_s=max(1.0, budget_s - (time.perf_counter() - started))))
        if reply.finish_reason == "time_limit":
            raise JudgeFailed(f"judging exceeded the time limit of {limit_s:.0f} s")
    except (JudgeFailed, *over_time) as exc:
        error = str(exc) if isinstance(exc, JudgeFailed) else \
            f"judging exceeded the time limit of {limit_s:.0f} s"
        record = judgement(question_id, model, judge_model, run, error=error)
    except Exception as exc:  # the model failed to load, llama.cpp error
        log.warning("judging failed for %s/%s/%s by %s: %s", batch_id, question_id, model,
                    judge_model, exc)
        record = judgement(question_id, model, judge_model, run,
                           error=str(exc).strip() or type(exc).__name__)
    else:
        grade = parse_grade(reply.text)
        record = judgement(question_id, model, judge_model, run, grade=grade, raw=reply.text,
                           error=None if grade else "no grade 1-5 in the judge's reply",
                           response_s=reply.total_s)
    judgements.save(client, batch_id, judge_model, record)
    return record


def record_failure(client: redis.Redis, batch_id: str, question_id: str, model: str,
                   judge_model: str, run: str, reason: str) -> None:
    """A judgement failed outside the step (its process was killed): stored failed, unless a
    graded one is there already."""
    judgements.save(client, batch_id, judge_model,
                    judgement(question_id, model, judge_model, run, error=reason))

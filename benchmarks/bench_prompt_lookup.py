"""Prompt lookup decoding: does drafting the next tokens from the prompt (RAG answers copy spans
of their contexts) make answers faster here, with the same text?

Real prompts first: one fleet per document set asks its questions (retrieval and prompt fitting
as `ragfleet ask` does them). Then, in this process, each model answers every prompt twice with
llama-cpp-python at temperature 0: plainly, and with `LlamaPromptLookupDecoding` as its draft
model (`--draft-tokens` drafted per step). Per model: time to first token, decoding tokens/s and
total seconds of both, their ratio, and how many answers came out word for word the same.
Writes benchmarks/results/prompt_lookup.json.

    python -m benchmarks.bench_prompt_lookup [--docs northwind,galaxy-s10] [--questions 12]
        [--models smollm2-135m,gemma3-270m] [--max-tokens 128] [--draft-tokens 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_overhead import fleet_env, ragfleet
from benchmarks.bench_study import DOCS, questions_file
from broker import connection
from shared.config import Settings
from shared.llm.catalog import load_fleet_catalog
from shared.llm.codec import PromptCodec
from shared.retrieval import prompts
from shared.state import batch_store


def real_prompts(docs: str, n: int, model: str, tmp: Path) -> list[list]:
    """The chat messages `ragfleet ask` built for n questions of a document set."""
    data_dir = tmp / f"fleet-{docs}"
    env = fleet_env(data_dir)
    questions = tmp / f"{docs}.jsonl"
    questions_file(DOCS[docs], n, questions)
    ragfleet(env, "up", "--model", model)
    try:
        ragfleet(env, "ingest", *map(str, sorted(DOCS[docs].glob("*.pdf"))), "-c", docs, "--wait")
        batch = json.loads(ragfleet(env, "ask", str(questions), "-c", docs, "-m", model,
                                    "--max-tokens", "8", "--top-k", "4", "--wait",
                                    "--json"))["batch"]
        _, client = connection.connect(Settings(data_dir=data_dir))
        template = prompts.BUILT_IN[prompts.DEFAULT_PROMPT]
        out = []
        for r in sorted(batch_store.results(client, batch), key=lambda r: r["question_id"]):
            kept = batch_store.contexts(client, batch, r["unit"])["contexts"][:r["contexts_used"]]
            out.append(template.messages(r["question"], kept))
        return out
    finally:
        ragfleet(env, "down")


def answer(llm, prompt: list[int], stop: list[str], max_tokens: int, model) -> dict:
    started = time.perf_counter()
    first, parts = None, []
    for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0,
                                       top_k=model.top_k, top_p=model.top_p,
                                       repeat_penalty=model.repeat_penalty, seed=0, stop=stop,
                                       stream=True):
        if first is None:
            first = time.perf_counter()
        parts.append(chunk["choices"][0]["text"])
    ended = time.perf_counter()
    text = "".join(parts)
    tokens = len(llm.tokenize(text.encode(), add_bos=False)) if text else 0
    first = first or ended
    return {"text": text, "tokens": tokens, "ttft_s": first - started, "total_s": ended - started,
            "decode_tokens_per_s": (tokens - 1) / (ended - first) if tokens > 1 and ended > first
            else None}


def one_model(name: str, prompt_sets: dict, max_tokens: int, draft_tokens: int,
              threads: int) -> dict:
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    settings = Settings()
    model = load_fleet_catalog(settings).get(name)
    path = model.ensure_file(settings.models_dir)
    runs = {}
    for label, draft in (("plain", None),
                         ("prompt_lookup", LlamaPromptLookupDecoding(num_pred_tokens=draft_tokens))):
        # with a draft model every position needs its logits, and llama-cpp-python sizes its
        # logits buffer by logits_all, not by the draft model: n_batch rows unless told
        llm = Llama(model_path=str(path), n_ctx=model.n_ctx, n_threads=threads,
                    n_threads_batch=threads, draft_model=draft, logits_all=draft is not None,
                    verbose=False)
        codec = PromptCodec(model, llm._model)
        llm.last_n_tokens_size = model.repeat_last_n
        rows = []
        for docs, sets in prompt_sets.items():
            for messages in sets:
                rendered = codec.render(messages)
                llm.reset()  # each answer from a cold cache: no prefix carried between them
                rows.append({"docs": docs, **answer(llm, codec.tokenize(rendered.text),
                                                    rendered.stop, max_tokens, model)})
        runs[label] = rows
        del llm
    plain, drafted = runs["plain"], runs["prompt_lookup"]

    def mean(rows, key):
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.mean(values) if values else None

    return {
        "answers": len(plain),
        "same_text": sum(a["text"] == b["text"] for a, b in zip(plain, drafted)),
        "plain": {k: mean(plain, k) for k in ("ttft_s", "decode_tokens_per_s", "total_s",
                                                 "tokens")},
        "prompt_lookup": {k: mean(drafted, k) for k in ("ttft_s", "decode_tokens_per_s",
                                                           "total_s", "tokens")},
        "total_time_ratio": sum(r["total_s"] for r in drafted) / sum(r["total_s"] for r in plain),
        "per_set_total_time_ratio": {
            docs: sum(r["total_s"] for r in drafted if r["docs"] == docs)
            / sum(r["total_s"] for r in plain if r["docs"] == docs) for docs in prompt_sets},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--draft-tokens", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        prompt_sets = {docs: real_prompts(docs, args.questions, models[0], Path(tmp))
                       for docs in args.docs.split(",")}
    figures = {"max_tokens": args.max_tokens, "draft_tokens": args.draft_tokens,
               "threads": args.threads, "questions_per_set": args.questions,
               "models": {m: one_model(m, prompt_sets, args.max_tokens, args.draft_tokens,
                                       args.threads) for m in models},
               "notes": "total_time_ratio < 1: prompt lookup is faster. llama-cpp-python turns "
                        "on logits for every token with a draft model (prompt tokens "
                        "included), which its time to first token shows."}
    print(json.dumps({m: {k: v for k, v in f.items() if k != "per_set_total_time_ratio"}
                      for m, f in figures["models"].items()}, indent=1))
    machine.write("prompt_lookup", figures)


if __name__ == "__main__":
    main()

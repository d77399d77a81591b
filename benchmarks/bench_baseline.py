"""The study's original stack against the fleet, on the same questions, model and parameters,
on every document set named (--docs; default Northwind and the Galaxy S10 manual).

Baseline (LangChain, as the study ran it by hand): PyPDFLoader pages split by
RecursiveCharacterTextSplitter (1000/150, the study's; and 500/50, as the chain is often run:
--chunkings), EnsembleRetriever over BM25Retriever and a FAISS
retriever with MMR search (k 4 each, weights 0.3/0.7), a RetrievalQA "stuff" chain (every fused
chunk goes into the prompt, uncut), LlamaCpp as the LLM with its own sampling defaults (repeat
penalty 1.1 over 64 tokens, top-k 40) and the study's temperature 0.01 and top_p 1. The prompt
is the study's own (instruction and contexts in the system turn, the question in the user turn)
in the model's chat format.

Fleet: `ragfleet ask` on the same PDF and questions (the model's default number of fused
contexts, `contexts` in the catalog: 2 for the bundled models; fitted to n_ctx), its default
sampling, once per prompt template (--prompts ragfleet,study): one fleet, one ingestion.

LangChain's LlamaCpp passes rope_freq_base=10000 to llama.cpp for every model, overriding the
GGUF's own (SmolLM2: 100000): the study ran its models with a RoPE base they were not trained
with, which changes their answers (shorter ones for SmolLM2). --langchain-rope both (default)
runs the baseline twice: as the study ran it, and with the model's own RoPE base, as the fleet
runs it.

The headline is like for like: the fleet with its defaults against the chain with the same model
configuration (the GGUF's RoPE base) and the chain's best-scoring chunking, per document set:
speedup_like_for_like (chain seconds per question / fleet seconds per question; > 1: the fleet
is faster) and cosine_ratio_like_for_like (fleet mean cosine / chain mean cosine); the top-level
figures are the worst set's. The ratios against the chain as the study ran it are kept beside.

Both answers are scored the same way (cosine similarity with the reference, all-MiniLM-L6-v2).
Needs the optional extra: pip install -e '.[bench]'. Writes benchmarks/results/baseline.json.

    .venv/bin/python -m benchmarks.bench_baseline [--docs northwind,galaxy-s10] [--questions 50]
        [--max-tokens 256] [--chunkings 1000/150,500/50] [--langchain-rope both]
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
from benchmarks.bench_prompts import paired
from benchmarks.bench_study import DOCS
from broker import connection
from shared.config import Settings
from shared.llm.catalog import load_catalog
from shared.llm.codec import PromptCodec
from shared.pipeline.answering import similarity
from shared.pipeline.questions import split_citations
from shared.retrieval import prompts
from shared.retrieval.embeddings import get_embedder
from shared.state import batch_store

# Every PDF of a set is ingested by both sides (Northwind's questions cite both plans).
BM25_WEIGHT = 0.3
K_EACH = 4


def langchain_embeddings():
    """The study's sentence-transformers model behind LangChain's Embeddings interface (the
    same offline all-MiniLM-L6-v2 files the fleet uses; no model hub here), on torch as
    LangChain's HuggingFaceEmbeddings runs it."""
    from langchain_core.embeddings import Embeddings

    class MiniLM(Embeddings):
        def embed_documents(self, texts):
            return get_embedder("torch-fp32").embed(list(texts)).tolist()

        def embed_query(self, text):
            return get_embedder("torch-fp32").embed([text])[0].tolist()

    return MiniLM()


def chat_prompt(model_name: str, llama_model):
    """The study's prompt in the model's chat format, with LangChain's {context} and
    {question} slots."""
    from langchain_core.prompts import PromptTemplate

    model = load_catalog(Settings().catalog_path).get(model_name)
    codec = PromptCodec(model, llama_model)
    study = prompts.BUILT_IN["study"]
    rendered = codec.render(study.messages("{question}", [{"text": "{context}"}]))
    return PromptTemplate.from_template(rendered.text), rendered.stop


def gguf_rope_base(path: Path) -> float | None:
    """The RoPE base the GGUF declares (`<arch>.rope.freq_base`), None if it declares none."""
    from llama_cpp import Llama

    meta = Llama(model_path=str(path), vocab_only=True, verbose=False).metadata
    value = next((v for k, v in meta.items() if k.endswith(".rope.freq_base")), None)
    return float(value) if value is not None else None


def build_chain(pdfs: list[Path], chunking: tuple[int, int], model_name: str, max_tokens: int,
                threads: int, temperature: float, model_rope: bool = False):
    from langchain_classic.chains import RetrievalQA
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.llms import LlamaCpp
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    settings = Settings()
    model = load_catalog(settings.catalog_path).get(model_name)
    pages = [page for pdf in pdfs for page in PyPDFLoader(str(pdf)).load()]
    size, overlap = chunking
    chunks = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap
                                            ).split_documents(pages)
    bm25 = BM25Retriever.from_documents(chunks, k=K_EACH)
    faiss = FAISS.from_documents(chunks, langchain_embeddings()).as_retriever(
        search_type="mmr", search_kwargs={"k": K_EACH})
    ensemble = EnsembleRetriever(retrievers=[bm25, faiss], weights=[BM25_WEIGHT, 1 - BM25_WEIGHT])
    path = model.ensure_file(settings.models_dir)
    rope = gguf_rope_base(path) if model_rope else None
    llm = LlamaCpp(model_path=str(path), n_ctx=model.n_ctx,
                   n_threads=threads, n_batch=512, temperature=temperature, top_p=model.top_p,
                   max_tokens=max_tokens, seed=0, verbose=False,
                   **({"rope_freq_base": rope} if rope else {}))
    template, stop = chat_prompt(model_name, llm.client._model)
    llm.stop = stop
    chain = RetrievalQA.from_chain_type(llm=llm, chain_type="stuff", retriever=ensemble,
                                        chain_type_kwargs={"prompt": template})
    return chain, len(chunks)


def run_baseline(pdfs: list[Path], chunking: tuple[int, int], model_name: str,
                 questions: list[dict], max_tokens: int, threads: int, temperature: float,
                 model_rope: bool = False) -> dict:
    chain, n_chunks = build_chain(pdfs, chunking, model_name, max_tokens, threads, temperature,
                                  model_rope)
    rows = []
    for q in questions:
        started = time.perf_counter()
        try:
            answer, error = chain.invoke({"query": q["question"]})["result"].strip(), None
        except Exception as exc:  # the study's chain overflows n_ctx on some questions
            answer, error = "", f"{type(exc).__name__}: {exc}"
        rows.append({"id": q["id"], "seconds": time.perf_counter() - started, "answer": answer,
                     "error": error})
    embedder = get_embedder()
    for row, q in zip(rows, questions):
        reference, _ = split_citations(q["reference"])  # as `ask` stores it
        row["cosine"] = similarity(embedder, row["answer"], reference) if row["answer"] else 0.0
    return {"chunks": n_chunks, "rows": rows}


STUDY_ROPE = 10000.0  # what LangChain's LlamaCpp passes for every model


def run_fleet(pdfs: list[Path], model_name: str, questions_path: Path, data_dir: Path,
              max_tokens: int,
              threads: int, temperature: float, prompt_names: list[str],
              study_rope_prompt: str | None = None) -> dict[str, dict]:
    """One batch per prompt template on one fleet: wall time and scored rows of each. With
    study_rope_prompt, one more batch with that prompt on a pool of the same GGUF added with
    the study's RoPE base (`models add --rope-freq-base 10000`): run as the study ran it."""
    env = fleet_env(data_dir)
    models = [model_name]
    if study_rope_prompt:
        path = load_catalog(Settings().catalog_path).get(model_name).ensure_file(
            Settings().models_dir)
        models.append(f"{model_name}-rope10k")
        ragfleet(env, "models", "add", models[1], "--file", str(path),
                 "--rope-freq-base", str(STUDY_ROPE))
    ragfleet(env, "up", *[a for m in models for a in ("--model", m)], "--threads", str(threads))
    runs = {}
    try:
        ragfleet(env, "ingest", *map(str, pdfs), "-c", "baseline", "--wait")
        _, client = connection.connect(Settings(data_dir=data_dir))
        plan = [(name, model_name, name) for name in prompt_names]
        if study_rope_prompt:
            plan.append((f"{study_rope_prompt}+rope10k", models[1], study_rope_prompt))
        for label, model, name in plan:
            started = time.perf_counter()
            summary = json.loads(ragfleet(
                env, "ask", str(questions_path), "-c", "baseline", "-m", model,
                "--max-tokens", str(max_tokens), "--temperature",
                str(temperature), "--prompt", name, "--wait", "--json"))
            wall = time.perf_counter() - started
            results = batch_store.results(client, summary["batch"])
            runs[label] = {"wall_s": wall, "rows": [
                {"id": r["question_id"], "seconds": r.get("total_s"),
                 "answer": r.get("answer") or "", "error": r["error"],
                 "completion_tokens": r.get("completion_tokens") or 0,
                 "prompt_tokens": r.get("prompt_tokens") or 0,
                 "contexts_used": r.get("contexts_used") or 0,
                 "cosine": r["cosine"] if r["cosine"] is not None else 0.0} for r in results]}
    finally:
        ragfleet(env, "down")
    return runs


def summary(rows: list[dict]) -> dict:
    answered = [r for r in rows if not r["error"]]
    return {
        "questions": len(rows),
        "failed": len(rows) - len(answered),
        "errors": sorted({r["error"][:120] for r in rows if r["error"]}),
        "mean_cosine": statistics.mean(r["cosine"] for r in rows),  # a failure scores 0
        "mean_cosine_answered": statistics.mean(r["cosine"] for r in answered) if answered else None,
        "mean_answer_words": statistics.mean(len(r["answer"].split()) for r in rows),
        "cosines": {r["id"]: r["cosine"] for r in rows},  # per question, for paired differences
        **({"mean_prompt_tokens": statistics.mean(r["prompt_tokens"] for r in answered),
            "mean_contexts": statistics.mean(r["contexts_used"] for r in answered)}
           if answered and "prompt_tokens" in answered[0] else {}),
    }


def read_questions(folder: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()
            if line.strip()]
    return [{"id": f"gt-{i:02d}", "question": row["question"],
             "reference": row.get("reference") or row["truth"]}
            for i, row in enumerate(rows[:n], start=1)]


def seconds_per_question(rows: list[dict]) -> float:
    return sum(r["seconds"] for r in rows) / len(rows)


def one_set(docs: str, args, prompt_names: list[str]) -> dict:
    """Every chain run and every fleet run on one document set, and their ratios."""
    pdfs = sorted(DOCS[docs].glob("*.pdf"))
    questions = read_questions(DOCS[docs], args.questions)
    ropes = ("study", "model") if args.langchain_rope == "both" else (args.langchain_rope,)
    chains = {}
    for label in args.chunkings.split(","):
        chunking = tuple(int(x) for x in label.split("/"))
        for rope in ropes:
            run = run_baseline(pdfs, chunking, args.model, questions, args.max_tokens,
                               args.threads, args.temperature, model_rope=rope == "model")
            chains[f"{label} rope:{rope}"] = {
                **summary(run["rows"]), "chunking": label, "chunks": run["chunks"],
                "rope_freq_base": STUDY_ROPE if rope == "study" else "the GGUF's",
                "seconds_per_question": seconds_per_question(run["rows"])}
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "questions.jsonl"
        subset.write_text("\n".join(json.dumps(q) for q in questions) + "\n")
        fleet = run_fleet(pdfs, args.model, subset, Path(tmp) / "data", args.max_tokens,
                          args.threads, args.temperature, prompt_names,
                          "study" if args.fleet_study_rope else None)
    fleet_runs = {name: {**summary(run["rows"]),
                         "seconds_per_question": run["wall_s"] / len(questions)}
                  for name, run in fleet.items()}

    def best_chain(rope: str) -> str | None:
        mine = [k for k, c in chains.items() if k.endswith(f"rope:{rope}")]
        return max(mine, key=lambda k: chains[k]["mean_cosine"]) if mine else None

    def against(chain_label: str | None, fleet_label: str) -> dict | None:
        if chain_label is None or fleet_label not in fleet_runs:
            return None
        chain, ours = chains[chain_label], fleet_runs[fleet_label]
        return {"chain": chain_label, "fleet": fleet_label,
                "speedup": chain["seconds_per_question"] / ours["seconds_per_question"],
                "cosine_ratio": ours["mean_cosine"] / chain["mean_cosine"]
                if chain["mean_cosine"] else None,
                "cosine_diff_paired": paired(chain, ours)}  # fleet - chain, 95% interval

    # like for like: the fleet's default prompt on the GGUF as it is, against the chain on the
    # same model configuration with its best chunking
    like_for_like = against(best_chain("model"), prompts.DEFAULT_PROMPT)
    return {"questions": len(questions), "pdfs": [p.name for p in pdfs], "chains": chains,
            "fleet": fleet_runs, "like_for_like": like_for_like,
            "against_the_study_as_run": against(best_chain("study"), prompts.DEFAULT_PROMPT),
            "best_fleet_prompt_like_for_like": max(
                (against(best_chain("model"), name) for name in prompt_names),
                key=lambda r: r["cosine_ratio"] if r else -1)}


def headline(sets: dict) -> dict:
    """The worst document set's like-for-like ratios: the target must hold on every set."""
    heads = [s["like_for_like"] for s in sets.values() if s["like_for_like"]]
    return {
        "speedup_like_for_like": min((h["speedup"] for h in heads), default=None),
        "cosine_ratio_like_for_like": min((h["cosine_ratio"] for h in heads
                                           if h["cosine_ratio"] is not None), default=None),
        "target": {"speedup_like_for_like": 1.5, "cosine_ratio_like_for_like": 1.0},
    }


def combined(names: list[str]) -> dict:
    """Runs of one set each (the whole study on one set can take hours here), as one file: each
    set keeps its own run's figures, command and machine."""
    sets, sources = {}, {}
    for name in names:
        run = json.loads((machine.RESULTS / f"{name}.json").read_text())
        for docs, figures in run["sets"].items():
            if docs in sets:
                raise SystemExit(f"{docs} is in both {sources[docs]} and {name}")
            sets[docs], sources[docs] = figures, name
            figures["source"] = {"file": f"benchmarks/results/{name}.json",
                                 "command": run["command"], "machine": run.get("machine")}
    return {**headline(sets), "sets": sets,
            "notes": "each set's figures come from its own run (source); the headline is the "
                     "worse set's",
            "command": ".venv/bin/python -m benchmarks.bench_baseline --combine "
                       + ",".join(names)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", default="northwind,galaxy-s10")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--temperature", type=float, default=0.01)  # the study's
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunkings", default="1000/150,500/50",
                        help="the chain's chunk size/overlap settings, comma-separated")
    parser.add_argument("--prompts", default="ragfleet,study",
                        help="the fleet's prompt templates to measure, comma-separated")
    parser.add_argument("--langchain-rope", choices=("both", "study", "model"), default="both",
                        help="the baseline's RoPE base: LangChain's 10000 (the study), the "
                             "GGUF's own, or both runs")
    parser.add_argument("--fleet-study-rope", action="store_true",
                        help="also run the fleet's study prompt on the model with the study's "
                             "RoPE base 10000 (as LangChain ran it)")
    parser.add_argument("--out", default="baseline",
                        help="results file name under benchmarks/results/ (without .json)")
    parser.add_argument("--combine", metavar="NAME,NAME",
                        help="run nothing: put the sets of these earlier results files (one "
                             "set per file) into --out, with the headline over all of them")
    args = parser.parse_args()
    if args.combine:
        machine.write(args.out, combined(args.combine.split(",")))
        return
    prompt_names = args.prompts.split(",")
    if prompts.DEFAULT_PROMPT not in prompt_names:
        prompt_names.append(prompts.DEFAULT_PROMPT)  # the headline is the fleet's default
    sets = {docs: one_set(docs, args, prompt_names) for docs in args.docs.split(",")}
    figures = {
        **headline(sets),
        "model": args.model,
        "default_prompt": prompts.DEFAULT_PROMPT,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "threads": args.threads,
        "sets": sets,
        "notes": "speedup = chain seconds per question / fleet wall time per question "
                 "(retrieval, queueing, generation, scoring); > 1 means the fleet is faster. "
                 "cosine ratio = fleet / chain mean cosine; > 1 means the fleet is more "
                 "accurate; a failed question scores 0. Like for like: the fleet's default "
                 "prompt against the chain at the GGUF's RoPE base with its best chunking.",
        "command": ".venv/bin/python -m benchmarks.bench_baseline "
                   f"--docs {args.docs} --questions {args.questions} "
                   f"--max-tokens {args.max_tokens} --model {args.model} "
                   f"--chunkings {args.chunkings} --prompts {args.prompts} "
                   f"--langchain-rope {args.langchain_rope}"
                   + (" --fleet-study-rope" if args.fleet_study_rope else "")
                   + (f" --out {args.out}" if args.out != "baseline" else ""),
    }
    print(json.dumps({d: s["like_for_like"] for d, s in sets.items()}, indent=1))
    machine.write(args.out, figures)


if __name__ == "__main__":
    main()

"""What a model pool really needs in memory, against the estimate the fit check uses.

Each model is loaded in a fresh child process as a pool loads it (LlamaEngine, the catalog's
n_ctx, THREADS threads) and answers one prompt of about 1,800 tokens (a 2,048-token context
nearly full). Linux splits the process's resident memory into anonymous pages (heap: KV cache,
compute buffers, weights llama.cpp copied) and file-backed pages (the memory-mapped GGUF).
File-backed pages are clean: the kernel drops them under pressure and reads them again when
touched. So resident memory (VmRSS, its peak VmHWM) overstates what a machine must have when
llama.cpp repacks weights into its own layout (the CPU backend's "extra buffer types", faster
matrix products): the repacked copy is anonymous, and the pages of the file it was read from
stay mapped although they are never read again.

Variants per model: llama.cpp's default (mmap, repack); repack off (use_extra_bufts false,
ragfleet's default since this measurement); mmap off (the file read into anonymous memory).
Writes benchmarks/results/memory.json.

    python -m benchmarks.bench_memory [--models a,b] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_MODELS = "smollm2-135m,gemma3-270m,qwen2.5-coder-1.5b,qwen2.5-coder-1.5b-q2_k"
VARIANTS = ("repack", "no-repack", "no-mmap")


def status_bytes() -> dict:
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak_rss"}
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in wanted:
                out[wanted[key]] = int(line.split()[1]) * 1024
    return out


def long_prompt(tokenize, target_tokens: int) -> str:
    from pypdf import PdfReader

    pdf = DATA / "northwind" / "Northwind_Standard_Benefits_Details.pdf"
    text = " ".join((page.extract_text() or "") for page in PdfReader(pdf).pages[5:20])
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest prefix within the target
        mid = (lo + hi + 1) // 2
        if len(tokenize(" ".join(words[:mid]))) <= target_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def child(model_name: str, variant: str, threads: int, prompt_tokens: int | None) -> dict:
    """In a fresh process: load, measure, answer, measure."""
    from shared.config import Settings
    from shared.llm.catalog import load_fleet_catalog
    from shared.llm.llama_engine import LlamaEngine
    from shared.llm.memory import estimate
    from shared.llm.requests import ChatMessage, GenerationRequest

    if variant == "no-mmap":
        import llama_cpp

        real = llama_cpp.Llama.__init__

        def without_mmap(self, *args, **kwargs):
            real(self, *args, **{**kwargs, "use_mmap": False})

        llama_cpp.Llama.__init__ = without_mmap
    import workers.llm_tasks  # noqa: F401  (a pool's process holds these before it loads)

    settings = Settings()
    model = load_fleet_catalog(settings).get(model_name)
    if variant in ("repack", "no-repack"):
        model = model.model_copy(update={"repack": variant == "repack"})
    path = model.ensure_file(settings.models_dir)
    before = status_bytes()
    engine = LlamaEngine(model, path, threads)
    loaded = status_bytes()
    context = long_prompt(engine.tokenize, prompt_tokens or model.n_ctx - 300)
    request = GenerationRequest(model=model_name, max_tokens=64, messages=[
        ChatMessage(role="user", content=f"{context}\n\nWhat does this say about deductibles?")])
    result = engine.generate(request)
    answered = status_bytes()
    guess = estimate(path, model.n_ctx, 1)
    return {"model": model_name, "variant": variant, "threads": threads,
            "file_bytes": path.stat().st_size, "quantization": engine.quantization,
            "load_s": round(engine.load_s, 2), "prompt_tokens": result.prompt_tokens,
            "ttft_s": round(result.ttft_s, 2), "tokens_per_s": round(result.tokens_per_s, 2),
            "before_load": before, "after_load": loaded, "after_answer": answered,
            "estimate": {"model": guess.model_bytes, "kv": guess.kv_bytes,
                         "overhead": guess.overhead_bytes, "total": guess.total}}


def summarise(row: dict) -> dict:
    end, base = row["after_answer"], row["before_load"]
    need = end["anon"] + max(0, end["file"] - base["file"])  # what it touched, counted once
    return {
        "model": row["model"], "variant": row["variant"],
        "file_mb": round(row["file_bytes"] / 2**20),
        "peak_rss_mb": round(end["peak_rss"] / 2**20),
        "anon_mb": round(end["anon"] / 2**20), "file_backed_mb": round(end["file"] / 2**20),
        "python_before_load_mb": round(base["rss"] / 2**20),
        "estimate_mb": round(row["estimate"]["total"] / 2**20),
        "peak_rss_over_estimate": round(end["peak_rss"] / row["estimate"]["total"], 3),
        "touched_mb": round(need / 2**20),
        "load_s": row["load_s"], "ttft_s": row["ttft_s"], "tokens_per_s": row["tokens_per_s"],
        "prompt_tokens": row["prompt_tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt-tokens", type=int, default=None,
                        help="context tokens (default: n_ctx - 300, a nearly full window)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of every variant, in alternating order (speed comparisons)")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.threads, args.prompt_tokens)))
        return
    rows = []
    variants = args.variants.split(",")
    runs = [(model, variant) for model in args.models.split(",") for r in range(args.rounds)
            for variant in (variants if r % 2 == 0 else variants[::-1])]
    for model, variant in runs:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child",
                               model, variant, "--threads", str(args.threads),
                               *(["--prompt-tokens", str(args.prompt_tokens)]
                                 if args.prompt_tokens else [])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{model} {variant}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["summary"] = summarise(row)
        rows.append(row)
        print(json.dumps(row["summary"]), f"({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "prompt_tokens": args.prompt_tokens,
                                    "rounds": args.rounds, "runs": rows,
                                    "medians": medians(rows)}, indent=2) + "\n")


def medians(rows: list[dict]) -> list[dict]:
    """Per model and variant: the median of each speed figure, and peak memory."""
    from statistics import median

    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["variant"]), []).append(row["summary"])
    return [{"model": model, "variant": variant, "runs": len(group),
             **{k: round(median(g[k] for g in group), 2)
                for k in ("ttft_s", "tokens_per_s", "load_s", "peak_rss_mb", "anon_mb",
                          "file_backed_mb", "estimate_mb")}}
            for (model, variant), group in groups.items()]


if __name__ == "__main__":
    main()

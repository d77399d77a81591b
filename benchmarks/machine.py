"""Machine details written beside every figure, and the JSON writer the benchmarks share."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def details() -> dict:
    import llama_cpp

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(name: str, figures: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**figures, "machine": details()}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))

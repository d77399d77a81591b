"""`ragfleet models quantize`: llama.cpp's own quantizer on the bundled SmolLM2 (135M: seconds),
the entries it writes, and its errors (an unknown type, a full disk: one line, nothing left)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, clean_env, ragfleet

pytestmark = pytest.mark.integration


@pytest.fixture()
def env(tmp_path):
    return clean_env(RAGFLEET_DATA_DIR=str(tmp_path / "data"),
                     RAGFLEET_MODELS_DIR=str(tmp_path / "models"))


def catalog(env) -> dict:
    listed = json.loads(ragfleet("models", "--json", env=env, timeout=120).stdout)["models"]
    return {m["name"]: m for m in listed}


def test_quantize_the_bundled_model_to_two_types(env, tmp_path):
    done = ragfleet("models", "quantize", "smollm2-135m", "--to", "q8_0", "--to", "Q4_0",
                    "--json", env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    made = {m["quantization"]: m for m in json.loads(done.stdout)["quantized"]}
    assert set(made) == {"Q8_0", "Q4_0"}
    # the source is Q4_1: both are requantizations, said plainly on stderr and recorded
    assert "already quantized (Q4_1)" in done.stderr and "requantizes" in done.stderr
    assert all(m["requantized"] and m["source_type"] == "Q4_1" for m in made.values())
    models = catalog(env)
    for qtype, name in (("Q8_0", "smollm2-135m-q8_0"), ("Q4_0", "smollm2-135m-q4_0")):
        entry = models[name]
        assert entry["availability"] == "present" and entry["catalog"] == "yours"
        assert Path(entry["path"]) == tmp_path / "models" / f"{name}.gguf"
        assert "requantized from Q4_1" in entry["description"]
        assert (entry["quantization"], entry["quantized_from"], entry["requantized"]) == (
            qtype, "smollm2-135m", True)
        # the file is what it says: llama.cpp reads its type back from the GGUF
        from shared.llm.quantize import file_type_of
        assert file_type_of(Path(entry["path"])) == qtype
    assert made["Q8_0"]["size"] > made["Q4_0"]["size"]
    # the new model keeps the source's chat template and answers
    assert models["smollm2-135m-q4_0"]["chat_template"] == models["smollm2-135m"]["chat_template"]
    from llama_cpp import Llama
    llm = Llama(models["smollm2-135m-q4_0"]["path"], n_ctx=256, verbose=False)
    out = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert out["choices"][0]["message"]["content"].strip()
    # a second time: the name is taken, nothing is overwritten
    again = ragfleet("models", "quantize", "smollm2-135m", "--to", "Q4_0", env=env, timeout=120)
    assert_one_line_error(again, 2, "smollm2-135m-q4_0", "already in the catalog")


@pytest.mark.parametrize("args, needle", [
    (["smollm2-135m", "--to", "Q9_Z"], "unknown quantization type 'Q9_Z'"),
    (["smollm2-135m", "--to", "IQ2_XS"], "needs an importance matrix"),
    (["no-such-model", "--to", "Q4_0"], "unknown model"),
    (["smollm2-135m"], "Missing option '--to'"),
])
def test_bad_quantize_requests_are_one_line(env, tmp_path, args, needle):
    result = ragfleet("models", "quantize", *args, env=env, timeout=120)
    if needle.startswith("Missing"):
        assert result.returncode == 2 and needle in result.stderr
    else:
        assert_one_line_error(result, 2, needle)
    assert not list((tmp_path / "models").glob("*")) if (tmp_path / "models").exists() else True


def test_a_full_disk_is_one_line_and_leaves_nothing(env, tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(small)],
                             capture_output=True) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("a small disk needs root and tmpfs (mount) here")
    try:
        env = {**env, "RAGFLEET_MODELS_DIR": str(small)}
        result = ragfleet("models", "quantize", "smollm2-135m", "--to", "Q8_0", env=env,
                          timeout=300)
        assert_one_line_error(result, 1, "needs about", "MB free")
        assert list(small.iterdir()) == []
        assert "smollm2-135m-q8_0" not in catalog(env)
    finally:
        subprocess.run(["umount", str(small)], check=False)

"""The quantization type a hub file's name declares, and the one file a --quant picks."""

from __future__ import annotations

import pytest

from shared.errors import UsageError
from shared.llm.hub import HubFile, choose_quant, quant_type_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name, qtype", [
    ("tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf", "Q5_K_M"),
    ("mistral-7b-instruct-v0.2.Q2_K.gguf", "Q2_K"),
    ("Qwen2.5-1.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("Meta-Llama-3-8B-Instruct.IQ3_XS.gguf", "IQ3_XS"),
    ("model_q8_0.gguf", "Q8_0"),
    ("gemma-2b-it-f16.gguf", "F16"),
    ("sub/dir/model-BF16.gguf", "BF16"),
    ("big-Q6_K-00001-of-00003.gguf", "Q6_K"),
    ("model.gguf", None),
    ("q4-notes.txt", None),
    ("v1.0.gguf", None),
])
def test_the_type_is_read_from_the_end_of_the_file_name(name, qtype):
    assert quant_type_of(name) == qtype


FILES = [HubFile("m.Q2_K.gguf", 1, None), HubFile("m.Q4_K_M.gguf", 1, None),
         HubFile("m.Q4_K_S.gguf", 1, None), HubFile("other.Q4_K_S.gguf", 1, None)]


def test_choose_quant_is_case_blind_and_exact():
    assert choose_quant("o/r", FILES, "q4_k_m").name == "m.Q4_K_M.gguf"
    assert choose_quant("o/r", FILES, "Q2_K").name == "m.Q2_K.gguf"


def test_choose_quant_names_what_there_is_when_the_type_is_absent_or_ambiguous():
    with pytest.raises(UsageError, match="has no Q3_K_M GGUF file; it has Q2_K, Q4_K_M, Q4_K_S"):
        choose_quant("o/r", FILES, "Q3_K_M")
    with pytest.raises(UsageError, match="several Q4_K_S files"):
        choose_quant("o/r", FILES, "Q4_K_S")

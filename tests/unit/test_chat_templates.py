import pytest

from shared.llm.chat_templates import chatml, gemma
from shared.llm.requests import ChatMessage

pytestmark = pytest.mark.unit

MESSAGES = [ChatMessage(role="system", content="Be precise."),
            ChatMessage(role="user", content="What is covered?")]


def test_gemma_keeps_the_system_text_in_the_first_user_turn():
    prompt = gemma(MESSAGES)
    assert prompt.text == ("<start_of_turn>user\nBe precise.\n\nWhat is covered?<end_of_turn>\n"
                           "<start_of_turn>model\n")
    assert prompt.stop == ["<end_of_turn>"]


def test_chatml_puts_system_first_so_its_prefix_is_reusable():
    prompt = chatml(MESSAGES)
    assert prompt.text.startswith("<|im_start|>system\nBe precise.<|im_end|>\n")
    assert prompt.text.endswith("<|im_start|>assistant\n")

import pytest

from shared.llm.chat_templates import TemplateUnusable, chatml, from_gguf, gemma
from shared.llm.requests import ChatMessage
from tests.chat_template_samples import DROPS_SYSTEM, MISTRAL_INSTRUCT, TINYLLAMA_CHAT

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


@pytest.mark.parametrize("template, folded", [
    (MISTRAL_INSTRUCT, True),  # raises on a system message
    (DROPS_SYSTEM, True),  # renders without it
    (TINYLLAMA_CHAT, False),  # takes it as it is
])
def test_a_template_that_refuses_a_system_turn_gets_the_instruction_in_the_user_turn(
        template, folded):
    render, how = from_gguf(template, "<s>", "</s>")
    text = render(MESSAGES).text
    assert "Be precise." in text and "What is covered?" in text
    assert text.index("Be precise.") < text.index("What is covered?")
    assert ("folded" in how) == folded
    if template is MISTRAL_INSTRUCT:
        assert text == "<s>[INST] Be precise.\n\nWhat is covered? [/INST]"


def test_a_template_that_cannot_render_a_user_turn_is_refused():
    with pytest.raises(TemplateUnusable):
        from_gguf("{{ raise_exception('no') }}", "<s>", "</s>")

"""Turn chat messages into the model's own prompt text.

Default: the chat template inside the GGUF (`tokenizer.chat_template`), rendered by
llama-cpp-python's Jinja2 formatter. A catalog `chat_format` names a built-in format for GGUFs
that carry none; llama-cpp-python's own "gemma" format drops the system message, so ours folds
it into the first user turn, as Gemma's official template does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.llm.requests import ChatMessage


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stop: list[str]


Formatter = Callable[[list[ChatMessage]], RenderedPrompt]


def _fold_system(messages: list[ChatMessage]) -> list[ChatMessage]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if system and rest and rest[0].role == "user":
        rest[0] = ChatMessage(role="user", content=f"{system}\n\n{rest[0].content}")
    elif system:
        rest.insert(0, ChatMessage(role="user", content=system))
    return rest


def gemma(messages: list[ChatMessage]) -> RenderedPrompt:
    turns = {"user": "user", "assistant": "model"}
    text = "".join(
        f"<start_of_turn>{turns[m.role]}\n{m.content}<end_of_turn>\n"
        for m in _fold_system(messages)
    )
    return RenderedPrompt(text + "<start_of_turn>model\n", ["<end_of_turn>"])


def chatml(messages: list[ChatMessage]) -> RenderedPrompt:
    text = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    return RenderedPrompt(text + "<|im_start|>assistant\n", ["<|im_end|>"])


BUILT_IN: dict[str, Formatter] = {"gemma": gemma, "chatml": chatml}


def from_jinja(template: str, bos_token: str, eos_token: str) -> Formatter:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    jinja = Jinja2ChatFormatter(template=template, bos_token=bos_token, eos_token=eos_token)

    def render(messages: list[ChatMessage]) -> RenderedPrompt:
        response = jinja(messages=[m.model_dump() for m in messages])
        stop = response.stop if isinstance(response.stop, list) else [response.stop]
        return RenderedPrompt(response.prompt, [s for s in stop if s])

    return render


def known_formats() -> list[str]:
    return sorted(BUILT_IN)

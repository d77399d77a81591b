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


FALLBACK = "chatml"  # for a GGUF with no template
_PROBE_SYSTEM, _PROBE_USER = "ragfleet-probe-system", "ragfleet-probe-user"


class TemplateUnusable(Exception):
    """The GGUF's template cannot render even a single user turn."""


def from_gguf(template: str, bos_token: str, eos_token: str) -> tuple[Formatter, str]:
    """The GGUF's own template, and how it is used. Many templates refuse a system message
    (Mistral Instruct's raises "Conversation roles must alternate ...") or drop it silently:
    found out by rendering one, not from the model's name; then the instruction is folded into
    the first user turn, as Gemma's template does itself."""
    render = from_jinja(template, bos_token, eos_token)
    probe = [ChatMessage(role="system", content=_PROBE_SYSTEM),
             ChatMessage(role="user", content=_PROBE_USER)]
    try:
        text = render(probe).text
        if _PROBE_SYSTEM in text and _PROBE_USER in text:
            return render, "gguf"
    except Exception:  # jinja2's raise_exception, or an error of the template itself
        pass
    try:
        folded = render(_fold_system(probe)).text
    except Exception as exc:
        raise TemplateUnusable(f"its chat template cannot render a user turn: {exc}") from None
    if _PROBE_SYSTEM not in folded or _PROBE_USER not in folded:
        raise TemplateUnusable("its chat template drops the user's message")
    return (lambda messages: render(_fold_system(messages))), \
        "gguf (refuses a system turn: instruction folded into the first user turn)"


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

"""The RAG prompt: named, versioned templates that say the system text, where the retrieved
contexts go (system or user turn) and how they are joined; and fitting a prompt to the model's
context window.

Contexts are dropped lowest-ranked first until the prompt leaves the answer its room: all of
max_tokens when that fits, else at least `min_answer_tokens`; generation is then capped at the
room left (as llama-cpp-python caps the study's max_tokens 2000 at n_ctx 2048).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import RagfleetError, UsageError
from shared.llm.requests import ChatMessage

# The default: of five wordings asked the 50 questions of two document sets (Northwind, the
# Galaxy S10 manual) by SmolLM2, "sentences" wrote the shortest answers (64 and 79 new tokens
# against the study's 223 and 216) in the fewest seconds, at a mean cosine above the study's
# prompt on Northwind (+0.029, interval above 0) and level on the manual (+0.004)
# (benchmarks/bench_prompts.py, BENCHMARKS.md). Batches from before prompt templates were asked
# with ragfleet's.
DEFAULT_PROMPT = "sentences"
LEGACY_PROMPT = "ragfleet"
DEFAULT_MIN_ANSWER_TOKENS = 256


class QuestionTooLong(RagfleetError):
    pass


class PromptTemplate(BaseModel):
    """`system` and `user` are format strings with {context} and {question}; {context} is the
    retrieved passages joined by `separator`, plain (small models copy numbered labels such as
    "[5] (file, page 12)" into their answers instead of answering)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(default=1, ge=1)
    description: str = ""
    system: str
    user: str = "{question}"
    user_without_context: str | None = Field(
        default=None, description="the user turn when retrieval found nothing (default: user)")
    separator: str = "\n\n"
    # Contexts arrive ranked best first. best_last puts the best one nearest the question (the
    # end of {context}), where small models attend most; fitting still drops the lowest-ranked.
    context_order: Literal["best_first", "best_last"] = "best_first"

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTemplate:
        for field in ("system", "user", "user_without_context"):
            text = getattr(self, field)
            try:
                (text or "").format(context="", question="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{field}: only {{context}} and {{question}} may be used "
                                 f"(double other braces): {exc}") from None
        if "{question}" not in self.system + self.user:
            raise ValueError("the template never shows the {question}")
        return self

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"

    def messages(self, question: str, contexts: list[dict]) -> list[ChatMessage]:
        ordered = contexts[::-1] if self.context_order == "best_last" else contexts
        context = self.separator.join(c["text"] for c in ordered)
        user = self.user if contexts or self.user_without_context is None \
            else self.user_without_context
        values = {"context": context, "question": question}
        return [ChatMessage(role="system", content=self.system.format(**values)),
                ChatMessage(role="user", content=user.format(**values))]


BUILT_IN: dict[str, PromptTemplate] = {t.name: t for t in (
    PromptTemplate(
        name="ragfleet", description="a short instruction first (its evaluated prefix is reused "
        "between questions), the contexts and the question in the user turn",
        system="You answer questions about the user's documents. Use only the context in the "
               "user's message. Respond precisely and concisely. If the answer is not in the "
               "context, say that you do not know.",
        user="Context:\n{context}\n\nQuestion: {question}",
        user_without_context="Question: {question}"),
    PromptTemplate(
        name="study", description="the study's prompt, verbatim: instruction and contexts in "
        "the system turn, the question alone in the user turn",
        system="You are a friendly chatbot who always responds in a precise manner. If answer "
               "is unknown to you, you will politely say so.\nUse the following context to "
               "answer the question below:\n{context}",
        user="{question}"),
    PromptTemplate(
        name="sentences", description="the default: contexts in the system turn, the question "
        "last with a length limit (small models heed what they read last), so answers end when "
        "they are complete",
        system="Answer the question using only this context:\n{context}\nIf the context does "
               "not contain the answer, say so.",
        user="{question}\nAnswer in at most three sentences."),
)}


def load_prompts(user_file: Path | None = None) -> dict[str, PromptTemplate]:
    """The built-in templates, with the user's from a TOML file ([prompts.NAME] tables with
    the PromptTemplate fields) over them."""
    templates = dict(BUILT_IN)
    if user_file is None or not user_file.is_file():
        return templates
    try:
        raw = tomllib.loads(user_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"prompt file {user_file} is not valid TOML: {exc}") from None
    for name, fields in raw.get("prompts", {}).items():
        try:
            templates[name] = PromptTemplate(name=name, **fields)
        except (ValidationError, TypeError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise UsageError(f"prompt file {user_file}: prompt {name!r}: {detail}") from None
    return templates


def get_prompt(name: str, user_file: Path | None = None) -> PromptTemplate:
    templates = load_prompts(user_file)
    try:
        return templates[name]
    except KeyError:
        raise UsageError(f"unknown prompt {name!r} (known: {', '.join(sorted(templates))})") \
            from None


def messages_for(question: str, contexts: list[dict],
                 template: PromptTemplate | None = None) -> list[ChatMessage]:
    """The chat messages of a question with its contexts (the default template unless given)."""
    return (template or BUILT_IN[DEFAULT_PROMPT]).messages(question, contexts)


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[ChatMessage]
    contexts_kept: int
    prompt_tokens: int
    max_tokens: int  # new tokens the answer may take: the room left, at most what was asked


def fit_prompt(question: str, contexts: list[dict],
               count_tokens: Callable[[list[ChatMessage]], int], n_ctx: int, max_tokens: int,
               template: PromptTemplate | None = None,
               min_answer_tokens: int = DEFAULT_MIN_ANSWER_TOKENS) -> FittedPrompt:
    """The messages that fit with the contexts they keep, and the answer's cap."""
    template = template or BUILT_IN[DEFAULT_PROMPT]
    room = min(max_tokens, min_answer_tokens)
    kept = list(contexts)
    while True:
        messages = template.messages(question, kept)
        tokens = count_tokens(messages)
        if tokens + room <= n_ctx:
            return FittedPrompt(messages, len(kept), tokens, min(max_tokens, n_ctx - tokens))
        if not kept:
            raise QuestionTooLong(
                f"the question alone takes {tokens} tokens; with room for {room} new tokens it "
                f"does not fit n_ctx {n_ctx}"
            )
        kept.pop()  # contexts are ranked best first: drop the weakest

"""The RAG prompt: a fixed system instruction first (llama.cpp reuses its evaluated prefix
between questions), then the retrieved contexts and the question. Contexts are dropped
lowest-ranked first until prompt plus max_tokens fit the model's context window."""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import RagfleetError
from shared.llm.requests import ChatMessage

SYSTEM_PROMPT = (
    "You answer questions about the user's documents. Use only the context in the user's "
    "message. Respond precisely and concisely. If the answer is not in the context, say that "
    "you do not know."
)


class QuestionTooLong(RagfleetError):
    pass


def context_block(contexts: list[dict]) -> str:
    # Plain passages, as the study's "stuff" chain gave them: small models copy numbered labels
    # such as "[5] (file, page 12)" into their answers instead of answering.
    return "\n\n".join(c["text"] for c in contexts)


def messages_for(question: str, contexts: list[dict]) -> list[ChatMessage]:
    user = (f"Context:\n{context_block(contexts)}\n\nQuestion: {question}" if contexts
            else f"Question: {question}")
    return [ChatMessage(role="system", content=SYSTEM_PROMPT), ChatMessage(role="user", content=user)]


def fit_prompt(question: str, contexts: list[dict], count_tokens: Callable[[list[ChatMessage]], int],
               n_ctx: int, max_tokens: int) -> tuple[list[ChatMessage], int, int]:
    """The messages that fit, how many contexts they keep, and their prompt tokens."""
    budget = n_ctx - max_tokens
    kept = list(contexts)
    while True:
        messages = messages_for(question, kept)
        tokens = count_tokens(messages)
        if tokens <= budget:
            return messages, len(kept), tokens
        if not kept:
            raise QuestionTooLong(
                f"the question alone takes {tokens} tokens; with {max_tokens} new tokens it "
                f"does not fit n_ctx {n_ctx}"
            )
        kept.pop()  # contexts are ranked best first: drop the weakest

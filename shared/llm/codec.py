"""Chat messages to prompt tokens for one loaded model: its chat template and its tokenizer,
shared by both engines."""

from __future__ import annotations

import logging
from pathlib import Path

from shared.errors import ModelUnavailable
from shared.llm import chat_templates
from shared.llm.catalog import ModelSettings
from shared.llm.engine import PromptTooLong
from shared.llm.requests import ChatMessage, GenerationRequest, Sampling, SamplingOverrides
from shared.llm.vocab import vocab_only

log = logging.getLogger(__name__)


class PromptCodec:
    """Chat messages to prompt tokens for one loaded model: its chat template (or the catalog's
    chat_format) and its tokenizer. Read-only, so safe to call from several threads."""

    def __init__(self, model: ModelSettings, llama_model):
        self.model = model
        self.llama_model = llama_model  # llama_cpp._internals.LlamaModel
        self.bos_text = self.token_text(llama_model.token_bos())
        self.render, self.template = self._formatter()

    def _formatter(self) -> tuple[chat_templates.Formatter, str]:
        """The formatter and how it was chosen (`ragfleet models` and `status` show it)."""
        if self.model.chat_format:
            try:
                return (chat_templates.BUILT_IN[self.model.chat_format],
                        f"{self.model.chat_format} (catalog)")
            except KeyError:
                raise ModelUnavailable(
                    f"model {self.model.name!r}: unknown chat_format {self.model.chat_format!r} "
                    f"(known: {', '.join(chat_templates.known_formats())})"
                ) from None
        template = self.llama_model.metadata().get("tokenizer.chat_template")
        if not template:
            # a base model: some turn format beats llama-cpp-python's silent llama-2 default
            fallback = chat_templates.FALLBACK
            log.warning("model %s: the GGUF has no chat template; using %s", self.model.name,
                        fallback)
            return chat_templates.BUILT_IN[fallback], f"{fallback} (fallback: the GGUF has none)"
        try:
            return chat_templates.from_gguf(
                template, self.bos_text, self.token_text(self.llama_model.token_eos()))
        except chat_templates.TemplateUnusable as exc:
            raise ModelUnavailable(f"model {self.model.name!r}: {exc}; set chat_format in the "
                                   f"catalog (known: {', '.join(chat_templates.known_formats())})"
                                   ) from None

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llama_model.detokenize([token], special=True).decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens, with a BOS token unless the template already wrote one."""
        add_bos = bool(self.bos_text) and not text.startswith(self.bos_text)
        return self.llama_model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.tokenize(self.render(messages).text))

    def prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], int]:
        """The request's prompt tokens, stop strings and max new tokens; refused when they
        cannot fit the context window."""
        rendered = self.render(request.messages)
        tokens = self.tokenize(rendered.text)
        max_tokens = request.max_tokens or self.model.max_tokens
        if len(tokens) + max_tokens > self.model.n_ctx:
            raise PromptTooLong(
                f"prompt of {len(tokens)} tokens plus {max_tokens} new tokens exceeds "
                f"n_ctx {self.model.n_ctx} of {self.model.name}"
            )
        return tokens, rendered.stop + request.stop, max_tokens

    def sampling(self, request: GenerationRequest) -> Sampling:
        """Each sampling setting: the request's, else the catalog's."""
        return resolve_sampling(self.model, request)


def resolve_sampling(model: ModelSettings, overrides: SamplingOverrides) -> Sampling:
    """The request's (or batch's) sampling settings where given, else the model's."""
    given = overrides.model_dump(include=set(Sampling.model_fields), exclude_none=True)
    return Sampling(**{name: given.get(name, getattr(model, name))
                       for name in Sampling.model_fields})


def template_in_use(model: ModelSettings, path: Path) -> str:
    """Which chat template a pool of this model will use, and how (read without the weights)."""
    with vocab_only(path) as llama_model:
        return PromptCodec(model, llama_model).template

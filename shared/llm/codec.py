"""Chat messages to prompt tokens for one loaded model: its chat template and its tokenizer,
shared by both engines."""

from __future__ import annotations

from shared.errors import ModelUnavailable
from shared.llm import chat_templates
from shared.llm.catalog import ModelSettings
from shared.llm.engine import PromptTooLong
from shared.llm.requests import ChatMessage, GenerationRequest


class PromptCodec:
    """Chat messages to prompt tokens for one loaded model: its chat template (or the catalog's
    chat_format) and its tokenizer. Read-only, so safe to call from several threads."""

    def __init__(self, model: ModelSettings, llama_model):
        self.model = model
        self.llama_model = llama_model  # llama_cpp._internals.LlamaModel
        self.bos_text = self.token_text(llama_model.token_bos())
        self.render = self._formatter()

    def _formatter(self) -> chat_templates.Formatter:
        if self.model.chat_format:
            try:
                return chat_templates.BUILT_IN[self.model.chat_format]
            except KeyError:
                raise ModelUnavailable(
                    f"model {self.model.name!r}: unknown chat_format {self.model.chat_format!r} "
                    f"(known: {', '.join(chat_templates.known_formats())})"
                ) from None
        template = self.llama_model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ModelUnavailable(
                f"model {self.model.name!r}: the GGUF has no chat template; "
                "set chat_format in the catalog"
            )
        return chat_templates.from_jinja(
            template, self.bos_text, self.token_text(self.llama_model.token_eos())
        )

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

    def sampling(self, request: GenerationRequest) -> tuple[float, float]:
        """Temperature and top_p: the request's, else the catalog's."""
        temperature = self.model.temperature if request.temperature is None else request.temperature
        return temperature, self.model.top_p if request.top_p is None else request.top_p

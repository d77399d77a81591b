"""What an engine is asked and what it answers: chat messages, a generation request, its result.
JSON-friendly pydantic models, so they can cross process boundaries."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str


class SamplingOverrides(BaseModel):
    """Sampling settings a request (or a batch) may set; None takes the model's catalog value."""

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="0: no top-k cut")
    repeat_penalty: float | None = Field(default=None, gt=0, description="1.0: none")
    repeat_last_n: int | None = Field(default=None, ge=0,
                                      description="how many recent tokens the penalty looks at")
    seed: int | None = Field(default=None, ge=0)


class Sampling(BaseModel):
    """The sampling a generation ran with, every value resolved; stored with each answer."""

    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    repeat_last_n: int
    seed: int


class GenerationRequest(SamplingOverrides):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] = Field(default_factory=list)
    time_budget_s: float | None = Field(
        default=None, gt=0, description="stop decoding after this long (finish_reason time_limit)"
    )


class GenerationResult(BaseModel):
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float = Field(description="time to first token, prompt evaluation included")
    generation_s: float = Field(description="first token to last token")
    total_s: float
    tokens_per_s: float
    sampling: Sampling | None = Field(default=None, description="what it was sampled with")
    max_tokens: int | None = Field(default=None, description="the cap on new tokens it ran with")
    token_ids: list[int] = Field(default_factory=list, exclude=True,
                                 description="generated tokens, where the engine has them; "
                                             "never serialised")

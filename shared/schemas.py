"""Messages that cross process boundaries, as JSON-friendly pydantic models."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str


class GenerationRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
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
    token_ids: list[int] = Field(default_factory=list, exclude=True,
                                 description="generated tokens, where the engine has them; "
                                             "never serialised")


class WorkerInfo(BaseModel):
    """What a live worker says about itself in the registry (refreshed by its heartbeat)."""

    nodename: str
    host: str
    pid: int
    queues: list[str]
    kind: str = Field(description="'llm' or 'cpu'")
    model: str | None = None
    model_file: str | None = None
    model_size: int | None = None
    backend: str = "cpu"
    n_threads: int | None = None
    concurrency: int = 1
    started_at: float

"""One typed settings object for every process: env prefix RAGFLEET_, plus REDIS_URL."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Redis's memory units (bytes when none); 0 means no limit
_REDIS_MEMORY = re.compile(r"^(\d+)(b|k|kb|m|mb|g|gb)?$")
_MIN_DEFAULT_REDIS_MEMORY = 256 * 2**20


def default_redis_maxmemory() -> str:
    """A quarter of this machine's physical memory, at least 256 MB. Redis holds only state
    (queues, collections, batches); the model pools need the rest. A quarter also leaves room
    for the fork that rewrites the append-only file, whose copy-on-write pages can approach
    Redis's own size while writes go on."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return f"{max(_MIN_DEFAULT_REDIS_MEMORY, total // 4) // 2**20}mb"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGFLEET_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "RAGFLEET_REDIS_URL"),
        description="Redis to use. Unset: the embedded Redis that `ragfleet up` starts.",
    )
    data_dir: Path = Field(
        default=Path(".ragfleet"),
        description="Embedded Redis data, logs and pid files of what `up` started.",
    )
    models_dir: Path = Field(
        default=PROJECT_ROOT / "models",
        description="Where downloaded or assembled GGUF files live.",
    )
    catalog_path: Path = Field(
        default=PROJECT_ROOT / "models" / "catalog.toml",
        description="The model catalog (TOML).",
    )
    redis_bind: str = Field(
        default="127.0.0.1", description="Address the embedded Redis listens on."
    )
    redis_password: str | None = Field(
        default=None,
        description="Password of the embedded Redis; required when it listens beyond loopback.",
    )
    redis_maxmemory: str = Field(
        default_factory=default_redis_maxmemory,
        description="Memory limit of the embedded Redis (Redis units: 512mb, 2gb; 0: none). "
        "Over it, writes fail with Redis's OOM error instead of the kernel's OOM killer "
        "taking the server. Default: a quarter of physical memory, at least 256mb.",
    )
    llm_task_time_limit_s: int = Field(
        default=600, gt=0, description="Hard time limit of one generation task."
    )
    cpu_task_time_limit_s: int = Field(
        default=600, gt=0, description="Hard time limit of an ingestion/retrieval/scoring task."
    )
    visibility_timeout_s: int | None = Field(
        default=None,
        gt=0,
        description="Redis visibility timeout: the task of a worker that died is redelivered "
        "after it. Must exceed every task time limit, or long tasks run twice. "
        "Default: the longest time limit plus 60 s.",
    )
    restore_sweep_s: int = Field(
        default=10, gt=0,
        description="How often workers look for the unacknowledged tasks of dead workers.",
    )
    max_deliveries: int = Field(
        default=3, ge=1,
        description="A task is run at most this many times: when its worker died that often "
        "running it (killed, out of memory, a crash), its next delivery records the failure "
        "instead of running it again.",
    )
    cores: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        gt=0,
        description="CPU cores shared by the model pools of this machine (thread budget).",
    )
    ready_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `up` waits for a pool to come online."
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="How often a worker refreshes its registry entry."
    )
    machine: str | None = Field(
        default=None, min_length=1,
        description="The machine whose cores this worker shares: an embedder (ingestion, "
        "scoring) waits while a model pool of the same machine generates. Default: the host "
        "name. Containers of one machine (docker-compose) have their own host names: give them "
        "one value.")

    score_waits_for_pools: bool = Field(
        default=True,
        description="Scoring an answer waits (at most a minute) while a model pool of its host "
        "generates, so the pool's timings are its own (BENCHMARKS.md). false: score at once, "
        "for machines whose pools leave cores free.")

    prompt: str = Field(default="sentences",  # shared.retrieval.prompts.DEFAULT_PROMPT
                        description="Prompt template of a batch unless `ask --prompt` names one.")
    min_answer_tokens: int = Field(
        default=256, gt=0,
        description="Room a prompt must leave its answer; contexts are dropped to keep it.")

    embedder: Literal["onnx-fp32", "torch-fp32", "onnx-int8"] = Field(
        default="onnx-int8",
        description="Embedder of new collections (answers are always scored with the exact "
        "fp32 embedder). onnx-int8 (dynamic int8, for retrieval only: 2.5x the study's "
        "ingestion; approximate, so some retrieved chunks differ, but on 50 paired questions "
        "neither the hit rate nor the answers' cosine moved beyond noise, BENCHMARKS.md; its "
        "collections are queried with it), onnx-fp32 (ONNX Runtime, exact: vectors equal "
        "torch's within 1e-6; 1.3x the study's ingestion), or torch-fp32 "
        "(sentence-transformers, the fallback).",
    )
    chunk_size: int = Field(default=1000, gt=0, description="Default characters per chunk.")
    chunk_overlap: int = Field(default=150, ge=0, description="Default overlap between chunks.")
    max_document_bytes: int = Field(
        default=100 * 1024 * 1024, gt=0, description="Largest PDF accepted, local or downloaded."
    )
    download_timeout_s: float = Field(default=60.0, gt=0, description="Time limit of a URL download.")
    allow_private_urls: bool = Field(
        default=False,
        description="Let URL ingestion fetch from loopback, private, link-local and other "
        "non-public addresses (off: only public addresses, also after redirects).",
    )
    upload_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0,
        description="How long uploaded document bytes wait in Redis for an ingest worker.",
    )
    flower_address: str = Field(default="127.0.0.1", description="Address Flower listens on.")
    flower_port: int | None = Field(default=None, description="Flower's port (unset: a free one).")
    flower_user: str = Field(default="ragfleet", description="Flower basic-auth user.")
    flower_password: str | None = Field(
        default=None,
        description="Flower basic-auth password; generated and kept in the data dir when unset.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        longest = self.longest_task_s
        if self.visibility_timeout_s is not None and self.visibility_timeout_s <= longest:
            raise ValueError(
                f"RAGFLEET_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed the "
                f"longest task time limit ({longest}), or long tasks are delivered twice"
            )
        memory = _REDIS_MEMORY.match(self.redis_maxmemory.strip().lower())
        if not memory:
            raise ValueError(
                f"RAGFLEET_REDIS_MAXMEMORY={self.redis_maxmemory!r}: give bytes or a size such "
                "as 512mb or 2gb (0: no limit)"
            )
        self.redis_maxmemory = memory.group(0)
        if self.redis_bind not in LOOPBACK_HOSTS and not self.redis_password:
            raise ValueError(
                f"RAGFLEET_REDIS_BIND={self.redis_bind} is beyond loopback: "
                "set RAGFLEET_REDIS_PASSWORD too"
            )
        return self

    @property
    def longest_task_s(self) -> int:
        return max(self.llm_task_time_limit_s, self.cpu_task_time_limit_s)

    @property
    def visibility_timeout(self) -> int:
        """A killed worker's task comes back within this plus one restore sweep: the hard time
        limit plus about 70 s by default."""
        return self.visibility_timeout_s or self.longest_task_s + 60

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def run_dir(self) -> Path:
        return self.data_path / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_path / "logs"

    @property
    def user_catalog_path(self) -> Path:
        """The user's models ([models.NAME] tables), over the shipped catalog."""
        return self.data_path / "catalog.toml"

    @property
    def prompts_path(self) -> Path:
        """The user's prompt templates ([prompts.NAME] tables), over the built-in ones."""
        return self.data_path / "prompts.toml"

    @property
    def redis_dir(self) -> Path:
        return self.data_path / "redis"


def soft_limit(hard_s: int) -> int:
    """The soft time limit of a task whose hard limit is hard_s: it raises inside the task, so
    the task can store a clear failure before the hard limit kills the process. 10% earlier, at
    most 30 s earlier."""
    return max(1, hard_s - min(30, max(1, hard_s // 10)))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def load_settings() -> Settings:
    """Settings from the environment, turning a validation failure into a usage error."""
    from pydantic import ValidationError

    from shared.errors import UsageError

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise UsageError(f"bad setting {where}: {first['msg']}") from None

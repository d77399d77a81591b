"""Queue names and task routing: `cpu` for ingestion, retrieval and scoring; `llm.<model>` per model."""

CPU_QUEUE = "cpu"
LLM_QUEUE_PREFIX = "llm."

# Task names are stable strings, so producers and workers on other machines agree on them.
PING_TASK = "ragfleet.cpu.ping"
INGEST_TASK = "ragfleet.cpu.ingest"
RETRIEVE_TASK = "ragfleet.cpu.retrieve"
SCORE_TASK = "ragfleet.cpu.score"
ANSWER_TASK = "ragfleet.llm.answer"
JUDGE_TASK = "ragfleet.llm.judge"  # `ragfleet judge`: sent to the judging model's queue
# `ragfleet questions generate`: one item per passage, sent to the generating model's queue
GENERATE_TASK = "ragfleet.llm.generate"


def llm_queue(model: str) -> str:
    return f"{LLM_QUEUE_PREFIX}{model}"


def model_of_queue(queue: str) -> str | None:
    return queue[len(LLM_QUEUE_PREFIX):] if queue.startswith(LLM_QUEUE_PREFIX) else None


# Model tasks have no static route: the producer names the model's queue when it sends them.
TASK_ROUTES = {"ragfleet.cpu.*": {"queue": CPU_QUEUE}}

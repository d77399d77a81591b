"""Every Redis key ragfleet writes, in one place. Celery's own keys are Celery's business."""

PREFIX = "ragfleet"

# Worker registry: one entry per live worker, refreshed by its heartbeat, expiring when it dies.
WORKER_PREFIX = f"{PREFIX}:worker:"


def worker_key(nodename: str) -> str:
    return f"{WORKER_PREFIX}{nodename}"


def worker_pattern() -> str:
    return f"{WORKER_PREFIX}*"


# The answers a host's model pools are generating: a sorted set of task ids, each scored by the
# time its mark expires (a dead process's mark lapses after the task's time limit).
def generating_key(host: str) -> str:
    return f"{PREFIX}:generating:{host}"


# Turns (state.turns): the model pool of a host whose turn it is to generate, and the pools of
# that host waiting for one, each scored by when it started waiting.
def turn_key(host: str) -> str:
    return f"{PREFIX}:turn:{host}"


def turn_waiting_key(host: str) -> str:
    return f"{PREFIX}:turn-waiting:{host}"


# Deliveries held: one hash per worker, delivery tag -> task id, of the tasks it received and
# has not acknowledged; the set of workers with such a record; and when each of them was first
# seen missing from the registry (state.inflight: a dead worker's tasks are put back at once).
INFLIGHT_WORKERS = f"{PREFIX}:inflight-workers"
INFLIGHT_MISSING = f"{PREFIX}:inflight-missing"


def inflight_key(nodename: str) -> str:
    return f"{PREFIX}:inflight:{nodename}"


# Collections: a pointer hash naming the current version; each version's data under its own keys,
# written in full before the pointer moves.
COLLECTIONS_SET = f"{PREFIX}:collections"


def collection_key(name: str) -> str:
    return f"{PREFIX}:collection:{name}"


def collection_version_counter(name: str) -> str:
    return f"{PREFIX}:collection:{name}:next-version"


def collection_lock(name: str) -> str:
    return f"{PREFIX}:collection:{name}:lock"


def collection_version_key(name: str, version: int, part: str) -> str:
    """part: manifest, chunks, faiss or bm25."""
    return f"{PREFIX}:collection:{name}:v{version}:{part}"


# Ingestion jobs and the document bytes the producer uploaded for them.
def ingest_job_key(job_id: str) -> str:
    return f"{PREFIX}:ingest-job:{job_id}"


INGEST_JOBS_INDEX = f"{PREFIX}:ingest-jobs"  # sorted set: job id by creation time


def upload_key(job_id: str, index: int) -> str:
    return f"{PREFIX}:upload:{job_id}:{index}"

# Batches: a hash with status and counters, plus the questions, retrieved contexts, answers (one
# per distinct question and model) and results (one per question id and model).
BATCHES_INDEX = f"{PREFIX}:batches"  # sorted set: batch id by creation time
BATCH_PARTS = ("questions", "units", "unsent", "contexts", "answers", "results")


def batch_key(batch_id: str, part: str | None = None) -> str:
    """part: None (status and counters), questions, units, unsent (units whose retrieve task is
    not known to be sent), contexts, answers or results."""
    base = f"{PREFIX}:batch:{batch_id}"
    return f"{base}:{part}" if part else base


# Deliveries: how often a task has started, by task id; a task whose worker died that often is
# failed instead of run again (a poison message). Kept while the task may come back.
def deliveries_key(task_id: str) -> str:
    return f"{PREFIX}:deliveries:{task_id}"


# The fleet's limits (visibility timeout, task time limits) as the first worker published them:
# every worker must run with the same ones, or one restores another's running tasks early.
FLEET_LIMITS = f"{PREFIX}:fleet-limits"


# Judgements (`ragfleet judge`): a judging model's grade of each answer of a batch, apart from
# its results (never written there): one hash per (batch, judging model), field
# "question id<TAB>model"; and the set of the models that judged the batch.
# Question generation jobs (`ragfleet questions generate`): the job (its passages and settings)
# and its items, one per passage, written by the generating model's pools.
def generation_key(job_id: str, part: str | None = None) -> str:
    """part: None (the job) or items."""
    return f"{PREFIX}:generation:{job_id}" + (f":{part}" if part else "")


def judge_key(batch_id: str, judge_model: str) -> str:
    return f"{batch_key(batch_id)}:judge:{judge_model}"


def judges_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:judges"

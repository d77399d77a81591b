"""Tasks of a model pool's queue (`llm.<model>`, routed by the producer): the answer step, the
judge (`ragfleet judge`: this pool's model grades an answer) and question generation
(`ragfleet questions generate`: this pool's model writes one item from one passage).
Adapters: each unpacks its arguments, calls shared.pipeline and sends what that returns next."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from broker.app import app
from broker.queues import ANSWER_TASK, GENERATE_TASK, JUDGE_TASK, SCORE_TASK
from shared.config import get_settings, soft_limit
from shared.pipeline import answering, judging, question_generation
from shared.state import registry
from workers import engine_holder, pool, resources
from workers.task_base import CountedTask


class AnswerTask(CountedTask):
    def give_up(self, args, reason):
        batch_id, unit, model = args[:3]
        answering.record_failure(resources.store(), batch_id, unit, model, reason)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Also called in the worker's main process when the hard time limit killed the pool
        process: the pair is recorded as failed, so the batch does not wait for it forever."""
        batch_id, unit, model = args[:3]
        reason = (f"generation exceeded the time limit of {exc.args[0]} s "
                  "(hard limit: the pool process was killed)"
                  if isinstance(exc, TimeLimitExceeded) else f"{type(exc).__name__}: {exc}")
        answering.record_failure(resources.store(), batch_id, unit, model, reason)


@app.task(name=ANSWER_TASK, base=AnswerTask, bind=True)
def answer(self, batch_id: str, unit: str, model: str, enqueued_at: float) -> None:
    """Generate this pool's answer to one distinct question, then have it scored."""
    config = pool.current()
    limit = get_settings().llm_task_time_limit_s
    stamp = answering.PoolStamp(worker=config.nodename, host=config.nodename.split("@", 1)[-1],
                                parallel=config.parallel)
    # while it generates, an ingestion on this host leaves the cores to it
    with registry.generating(resources.store(), registry.this_machine(), self.request.id or "",
                             limit + 60):
        # the engine stops itself at the soft limit; Celery's signals are the backstop
        to_score = answering.answer_unit(
            resources.store(), engine_holder.get, batch_id, unit, model, enqueued_at, stamp,
            budget_s=soft_limit(limit), limit_s=limit, over_time=(SoftTimeLimitExceeded,))
    for question_id in to_score:
        app.send_task(SCORE_TASK, args=[batch_id, question_id, unit, model])


class JudgeTask(CountedTask):
    def give_up(self, args, reason):
        judging.record_failure(resources.store(), *args[:5], reason)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """As for answers: a judgement whose pool process was killed is stored failed, so
        `judge --wait` does not wait for it forever."""
        reason = (f"judging exceeded the time limit of {exc.args[0]} s "
                  "(hard limit: the pool process was killed)"
                  if isinstance(exc, TimeLimitExceeded) else f"{type(exc).__name__}: {exc}")
        judging.record_failure(resources.store(), *args[:5], reason)


@app.task(name=JUDGE_TASK, base=JudgeTask, bind=True)
def judge(self, batch_id: str, question_id: str, model: str, judge_model: str, run: str) -> None:
    """Grade one stored answer of a batch with this pool's model, stored apart from it."""
    limit = get_settings().llm_task_time_limit_s
    with registry.generating(resources.store(), registry.this_machine(), self.request.id or "",
                             limit + 60):
        judging.judge_answer(resources.store(), engine_holder.get, batch_id, question_id, model,
                             judge_model, run, budget_s=soft_limit(limit), limit_s=limit,
                             over_time=(SoftTimeLimitExceeded,))


class GenerateTask(CountedTask):
    def give_up(self, args, reason):
        question_generation.record_failure(resources.store(), *args[:2], reason)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """As for answers: an item whose pool process was killed is stored failed, so
        `questions generate --wait` does not wait for it forever."""
        reason = (f"generation exceeded the time limit of {exc.args[0]} s "
                  "(hard limit: the pool process was killed)"
                  if isinstance(exc, TimeLimitExceeded) else f"{type(exc).__name__}: {exc}")
        question_generation.record_failure(resources.store(), *args[:2], reason)


@app.task(name=GENERATE_TASK, base=GenerateTask, bind=True)
def generate(self, job_id: str, index: int) -> None:
    """Write one question with its reference answer from one sampled passage."""
    limit = get_settings().llm_task_time_limit_s
    with registry.generating(resources.store(), registry.this_machine(), self.request.id or "",
                             limit + 60):
        question_generation.generate_item(
            resources.store(), engine_holder.get, job_id, index, budget_s=soft_limit(limit),
            limit_s=limit, over_time=(SoftTimeLimitExceeded,))

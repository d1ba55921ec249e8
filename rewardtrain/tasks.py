"""Celery tasks of rewardtrain: thin wrappers around its datasets, runs, SFT and policy runs, registry, generation
and evaluation modules."""
import logging

from celery import shared_task

from core.jobs import JobStatus

from . import datasets, evaluation, generation, policy_runs, registry, runs, sft_runs
from .models import PairDataset

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def build_pair_dataset_task(dataset_id: int) -> None:
    dataset = PairDataset.objects.get(pk=dataset_id)
    if dataset.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return  # a redelivered message: the first run's result stands
    try:
        datasets.build_pair_dataset(dataset)
    except Exception as error:
        log.exception("pair dataset %s failed", dataset_id)
        PairDataset.fail(dataset_id, f"{type(error).__name__}: {error}")


# Routed to the "training" queue (settings.CELERY_TASK_ROUTES): run those workers on GPU machines.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def train_reward_model_task(run_id: int) -> None:
    runs.execute_run(run_id)


# Routed to the "training" queue, like reward-model runs.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def train_sft_task(run_id: int) -> None:
    sft_runs.execute_sft_run(run_id)


# Routed to the "training" queue, like reward-model runs.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def optimise_policy_task(run_id: int) -> None:
    policy_runs.execute_policy_run(run_id)


@shared_task
def requeue_stale_runs_task() -> int:
    """Every kind of training run whose worker or message was lost (the beat, every minute)."""
    return sum(
        requeue() for requeue in (runs.requeue_stale_runs, sft_runs.requeue_stale_sft_runs,
                                  policy_runs.requeue_stale_policy_runs)
    )  # fmt: skip


@shared_task
def score_answers_task(model_dir: str, prompt: str, answers: list[str]) -> list[float]:
    """Scoring on a (GPU) training worker; the API scores in process instead (bench/score_latency.py)."""
    return registry.score_answers(model_dir, prompt, answers)


# The generation tasks were labeling's: their registered names stay, so CELERY_TASK_ROUTES, the beat schedule
# and the messages already in a broker still find them.
# Routed to the "generation" queue (settings.CELERY_TASK_ROUTES): run those workers where the model fits.
@shared_task(name="labeling.tasks.generate_answers_task", acks_late=True, reject_on_worker_lost=True)
def generate_answers_task(job_id: int) -> None:
    generation.run_generation_job(job_id)


# Light: runs on the default queue every minute (settings.CELERY_BEAT_SCHEDULE); the jobs and evaluation rounds it
# sends go to "generation".
@shared_task(name="labeling.tasks.requeue_stale_generation_jobs_task")
def requeue_stale_generation_jobs_task() -> int:
    return generation.requeue_stale_generation_jobs() + evaluation.requeue_stale_evaluation_rounds()


# Routed to the "generation" queue, like generation jobs: it samples from every policy of the round.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_evaluation_round_task(round_id: int) -> None:
    evaluation.run_evaluation_round(round_id)

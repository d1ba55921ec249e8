"""Sampling answers to a queue's prompts with a registered policy, for labelers to rank.

The model is loaded and sampled by rewardtrain.ml.sampling (transformers, no Django); this module runs a
GenerationJob in the worker: every prompt of the queue that has no answers gets K sampled answers,
a prompt that fails is recorded and the job goes on, and the ranking tasks are created at the end.
A job that lost its worker or its message is sent again by `requeue_stale_generation_jobs` (beat).
torch and transformers are imported inside the functions: the web process never needs them.
"""
import logging

from django.conf import settings
from django.db import transaction

from core import audit
from core.jobs import Heartbeat, claim, resend_stale
from core.text import without_nul
from labeling.assignment.services import sync_tasks
from labeling.models import Answer, Prompt, Queue

from . import policies
from .ml.sampling import load_generator, sample_answers
from .models import GenerationJob, Policy

log = logging.getLogger(__name__)

MAX_STORED_ERRORS = 1000  # a model failing on every prompt must not turn into a huge JSON column
# A queued job that no worker took for this long has probably lost its message (a broker restarted
# without persistence); it is sent again, and at most once per this period, since a busy generation
# queue can also hold a job this long and every copy is one more message to drop.


# The job ------------------------------------------------------------------------------------------


def request_generation_job(*, queue: Queue, policy: Policy, user=None, **parameters) -> GenerationJob:
    """Record a job sampling from `policy` and send it to the generation queue once the record is committed.

    PolicyUnavailable (a ValueError) if the policy is retired.
    """
    from .tasks import generate_answers_task  # here: the tasks module imports this one

    policies.check_usable(policy)
    with transaction.atomic():
        job = GenerationJob.objects.create(
            queue=queue, policy=policy, model_name=str(policy), created_by=user, **parameters
        )
        audit.record(actor=user, action="generation.request", target=job,
                     detail={"queue": queue.pk, "policy": policy.pk, **parameters})  # fmt: skip
        job.send_task(generate_answers_task)
    return job


def _claim(job_id: int) -> GenerationJob | None:
    """Take the job for this worker (core.jobs.claim), or None if it is finished or alive on another worker."""
    return claim(
        GenerationJob, job_id, related=("queue",),
        lost_reason="The worker stopped {attempts} times while sampling for this job (killed, out of memory, or"
        " the machine went away); it was not started again. The answers sampled so far are kept.",
    )  # fmt: skip


def requeue_stale_generation_jobs() -> int:
    """Send again the jobs that lost their worker or their message (core.jobs.resend_stale); returns how many.

    The job resumes: prompts that have answers are skipped; `_claim` fails it after MAX_ATTEMPTS starts.
    """
    from .tasks import generate_answers_task  # here: the tasks module imports this one

    return resend_stale(GenerationJob, generate_answers_task)


class RefusedAnswer(Exception):
    """A sampled text that cannot be stored as an answer; the message says why."""


def _clean_answer_text(text: str) -> str:
    """A sampled text as an answer: NUL removed (PostgreSQL refuses it), capped at MAX_TEXT_CHARS."""
    text = without_nul(text)[: settings.MAX_TEXT_CHARS]
    if not text.strip():
        raise RefusedAnswer("The model gave an empty answer.")
    return text


def answer_prompt(
    model, tokenizer, text: str, k: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int, device
) -> list[str]:
    """k sampled answers to one prompt, ready to store; RefusedAnswer if one cannot be stored.

    Each prompt is sampled on its own with the same seed, so its answers do not depend on which other
    prompts share the job (a restarted job, or the demo data, gets the same answers again).
    """
    (texts,) = sample_answers(
        model,
        tokenizer,
        [text],
        k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        device=device,
    )
    return [_clean_answer_text(t) for t in texts]


def run_generation_job(job_id: int) -> None:
    """The generation task's body: claim the job, sample for each prompt lacking answers, record it all."""
    job = _claim(job_id)
    if job is None:
        return
    heartbeat = Heartbeat(GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING))
    heartbeat.start()
    try:
        _generate(job)
    except Exception as error:  # the model would not load, or the database went away: say why
        log.exception("generation job %s failed", job.pk)
        GenerationJob.fail(job.pk, f"{type(error).__name__}: {error}")
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def _generate(job: GenerationJob) -> None:
    from .ml.device import pick_device

    # A restarted job starts its count again: the prompts it answered before have answers now.
    prompts = list(
        Prompt.objects.filter(queue=job.queue, excluded=False, answers__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")
    )
    GenerationJob.objects.filter(pk=job.pk).update(prompts_total=len(prompts), prompts_done=0, errors=[], error="")
    device = pick_device()
    # Jobs from before the policy registry name their model instead.
    files = policies.policy_files(job.policy) if job.policy else policies.resolve_generator(job.model_name)
    model, tokenizer = load_generator(files.name_or_path, files.gguf_file)
    model.to(device)
    sampling = {
        "temperature": job.temperature,
        "top_p": job.top_p,
        "max_new_tokens": job.max_new_tokens,
        "seed": job.seed,
    }
    meta = sampling | {"generation_job": job.pk, "policy": job.policy_id}
    label = str(job.policy) if job.policy else job.model_name  # what staff pages show as the answer's author
    errors: list[dict] = []
    for done, (prompt_id, text) in enumerate(prompts, start=1):
        try:
            if not Answer.objects.filter(prompt_id=prompt_id).exists():  # answered meanwhile: skip it
                texts = answer_prompt(model, tokenizer, text, job.answers_per_prompt, **sampling, device=device)
                _store_answers(prompt_id, texts, model_name=label, meta=meta)
        except Exception as error:  # one bad prompt (too long for the model, an empty answer) must not stop the job
            log.warning("generation job %s: prompt %s failed: %s", job.pk, prompt_id, error)
            if len(errors) < MAX_STORED_ERRORS:
                reason = str(error) if isinstance(error, RefusedAnswer) else f"{type(error).__name__}: {error}"
                errors.append({"prompt_id": prompt_id, "error": reason})
        GenerationJob.objects.filter(pk=job.pk).update(prompts_done=done, errors=errors)
    sync_tasks(job.queue)
    GenerationJob.finish(job.pk, GenerationJob.Status.SUCCEEDED)


def _store_answers(prompt_id: int, texts: list[str], *, model_name: str, meta: dict) -> None:
    with transaction.atomic():
        # The lock makes a second job (or a redelivered message) sampling the same prompt store nothing.
        Prompt.objects.select_for_update().filter(pk=prompt_id).exists()
        if Answer.objects.filter(prompt_id=prompt_id).exists():
            return
        Answer.objects.bulk_create(
            Answer(prompt_id=prompt_id, position=position, text=text, model=model_name, meta=meta)
            for position, text in enumerate(texts)
        )

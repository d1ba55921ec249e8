"""Evaluation rounds: policies compared blind by labelers, from the request to the ranking tasks.

ML staff pick a fresh queue (prompts no policy was trained on, with no answers yet), a baseline and the policies
to compare with it; the worker (the generation queue) samples each policy's answers to every prompt and makes
ranking tasks that labelers rank as any other. The figures (the labelers' win rate against the baseline with
its prompt-bootstrap interval, and what the reward model predicted) are read by rewardtrain.evaluation_selectors.

How a prompt never reaches labelers half answered: the worker samples policy by policy (one model in memory at
a time, so a round of large models needs no more memory than a generation job), keeping each policy's samples
in a file of the round (ARTIFACTS_DIR/evaluation/<id>/policy-<id>.jsonl). Only once every policy has answered
is a prompt written, all its answers in one transaction; a ranking task exists only for a prompt with answers
(labeling.assignment.services.sync_tasks, whoever calls it), so a worker that dies leaves prompts whole or
untouched. A round sent again resumes: prompts with answers are skipped, and each policy samples only the
prompts its file does not hold yet.

How the source stays hidden: an answer's `model` is the round's neutral name (no policy's), its position comes
from a seeded shuffle of all the prompt's answers (the rows are inserted in that order, so ids do not follow
the policies either), and labelers get their own shuffle on top (Assignment.answer_order). The policy is kept
in the answer's `meta`, which only staff read.
"""
from __future__ import annotations

import gc
import json
import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from core import audit
from core.jobs import FINISHED, Heartbeat, JobStatus, claim, resend_stale
from labeling.assignment.services import sync_tasks
from labeling.models import MAX_ANSWERS, MIN_RANKED_ANSWERS, Answer, Prompt, Queue, TaskKind

from . import policies, registry
from .generation import MAX_STORED_ERRORS, RefusedAnswer, answer_prompt
from .ml.sampling import load_generator
from .models import EvaluationRound, Policy, RewardModel

log = logging.getLogger(__name__)

SAMPLING = ("temperature", "top_p", "max_new_tokens", "seed")


def blind_model_name(round_: EvaluationRound) -> str:
    """What every answer of the round has as its `model`: the round's, the same for every policy."""
    return f"evaluation-round-{round_.pk}"


def compared_policies(round_: EvaluationRound) -> list[Policy]:
    """The baseline first, then the others by id."""
    return [round_.baseline, *round_.policies.order_by("pk")]


# The request ------------------------------------------------------------------------------------------


def _check_policies(baseline: Policy, others: Sequence[Policy], answers_per_policy: int) -> None:
    seen: set[int] = set()
    for policy in others:
        if policy.pk == baseline.pk:
            raise ValueError(f"The baseline {baseline} cannot also be one of the policies compared with it.")
        if policy.pk in seen:
            raise ValueError(f"Policy {policy} is listed twice.")
        seen.add(policy.pk)
    if not others:
        raise ValueError("Choose at least one policy to compare with the baseline (two policies in all).")
    for policy in (baseline, *others):
        policies.check_usable(policy)
    if not isinstance(answers_per_policy, int) or answers_per_policy < 1:
        raise ValueError("Each policy gives at least 1 answer per prompt.")
    count = len(others) + 1
    total = count * answers_per_policy
    if total > MAX_ANSWERS:
        raise ValueError(
            f"{count} policies × {answers_per_policy} answers = {total} answers per prompt; a prompt holds at most "
            f"{MAX_ANSWERS}. Compare fewer policies or ask for fewer answers each."
        )
    if total < MIN_RANKED_ANSWERS:  # not reachable with two policies; kept so the rule is whole
        raise ValueError(f"Labelers rank at least {MIN_RANKED_ANSWERS} answers per prompt.")


def _check_queue(queue: Queue) -> None:
    """The queue must be a fresh ranking queue: prompts no policy trained on, answered by nobody yet."""
    if queue.task_kind == Queue.Kinds.DEMONSTRATION:
        raise ValueError(
            f"Queue {queue} collects demonstrations only; an evaluation round needs a queue with ranking tasks."
        )
    if not queue.prompts.filter(excluded=False).exists():
        raise ValueError(f"Queue {queue} has no prompts to answer.")
    if queue.prompts.filter(answers__isnull=False).exists() or queue.tasks.filter(kind=TaskKind.RANKING).exists():
        raise ValueError(
            f"Queue {queue}'s prompts already have answers or rankings: a round needs a queue whose prompts only its "
            "policies answer. Import the prompts into a new queue."
        )
    trained = queue.sft_runs.order_by("pk").first() or queue.policy_runs.order_by("pk").first()
    if trained is not None:
        raise ValueError(
            f"Queue {queue}'s prompts trained {trained}: an evaluation needs prompts no policy was trained on."
        )
    busy = queue.evaluation_rounds.exclude(status__in=FINISHED).order_by("pk").first()
    if busy is not None:
        raise ValueError(f"Queue {queue} already has evaluation round {busy.pk} ({busy.status}).")


def _check_reward_model(model: RewardModel | None) -> None:
    if model is not None and not (Path(model.path) / "config.json").is_file():
        raise ValueError(f"Reward model {model}'s files are gone ({model.path}); choose another or none.")


def _validation_message(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return " ".join(error.messages)


def request_evaluation_round(
    *, name: str, queue: Queue, baseline: Policy, policies: Sequence[Policy], answers_per_policy: int,
    reward_model: RewardModel | None = None, user=None, **sampling,
) -> EvaluationRound:  # fmt: skip
    """Record a round comparing `policies` with `baseline` on `queue` and send it to the generation queue once the
    record is committed. `sampling`: temperature, top_p, max_new_tokens, seed (the model's defaults otherwise).

    Raises ValueError naming what is wrong; then nothing is recorded.
    """
    from .tasks import run_evaluation_round_task  # here: the tasks module imports this one

    unknown = sorted(set(sampling) - set(SAMPLING))
    if unknown:
        raise ValueError(f"Evaluation rounds take no {unknown[0]!r}; sampling takes {', '.join(SAMPLING)}.")
    others = list(policies)
    _check_policies(baseline, others, answers_per_policy)
    _check_reward_model(reward_model)
    with transaction.atomic():
        # Two requests for one queue take turns, so that they cannot both find it fresh.
        queue = Queue.objects.select_for_update().get(pk=queue.pk)
        _check_queue(queue)
        round_ = EvaluationRound(
            name=name.strip() if isinstance(name, str) else name, queue=queue, baseline=baseline,
            reward_model=reward_model, answers_per_policy=answers_per_policy, created_by=user, **sampling,
        )  # fmt: skip
        try:
            round_.full_clean(exclude=["created_by"])
        except ValidationError as error:
            raise ValueError(_validation_message(error)) from None
        round_.save()
        round_.policies.set(others)
        audit.record(actor=user, action="evaluation.request", target=round_, detail={
            "name": round_.name, "queue": queue.pk, "baseline": baseline.pk,
            "policies": [policy.pk for policy in others], "answers_per_policy": answers_per_policy,
            "reward_model": reward_model.pk if reward_model else None,
            **{key: getattr(round_, key) for key in SAMPLING},
        })  # fmt: skip
        round_.send_task(run_evaluation_round_task)
    return round_


def requeue_stale_evaluation_rounds() -> int:
    """Send again the rounds that lost their worker or their message (core.jobs.resend_stale); they resume."""
    from .tasks import run_evaluation_round_task  # here: the tasks module imports this one

    return resend_stale(EvaluationRound, run_evaluation_round_task)


# The worker -------------------------------------------------------------------------------------------


def samples_dir(round_: EvaluationRound) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "evaluation" / str(round_.pk)


class Samples:
    """One policy's sampled answers to the round's prompts, kept in a JSONL file until every policy has answered.

    Appended one prompt at a time and flushed, so a worker that dies loses at most the prompt it was sampling;
    a line cut short by that death is skipped when the file is read again.
    """

    def __init__(self, round_: EvaluationRound, policy: Policy):
        self.path = samples_dir(round_) / f"policy-{policy.pk}.jsonl"
        self.answers: dict[int, list[str]] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as file:
                for line in file:
                    try:
                        row = json.loads(line)
                        self.answers[int(row["prompt_id"])] = [str(text) for text in row["answers"]]
                    except (ValueError, KeyError, TypeError):
                        continue

    def add(self, prompt_id: int, texts: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps({"prompt_id": prompt_id, "answers": texts}, ensure_ascii=False) + "\n")
        self.answers[prompt_id] = texts


class _Errors:
    """The round's per-prompt errors as stored: [{"prompt_id", "policy" (id or null), "error"}], capped."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, prompt_id: int, policy: Policy | None, error: Exception) -> None:
        if len(self.rows) < MAX_STORED_ERRORS:
            reason = str(error) if isinstance(error, RefusedAnswer) else f"{type(error).__name__}: {error}"
            self.rows.append({"prompt_id": prompt_id, "policy": policy.pk if policy else None, "error": reason})


def run_evaluation_round(round_id: int) -> None:
    """The round's task body: claim it, sample every policy's answers, write them prompt by prompt, make the tasks."""
    round_ = claim(
        EvaluationRound, round_id, related=("queue", "baseline"),
        lost_reason="The worker stopped {attempts} times while sampling for this round (killed, out of memory, or"
        " the machine went away); it was not started again. The prompts written so far are kept.",
    )  # fmt: skip
    if round_ is None:
        return
    heartbeat = Heartbeat(EvaluationRound.objects.filter(pk=round_.pk, status=JobStatus.RUNNING))
    heartbeat.start()
    try:
        _evaluate(round_)
    except Exception as error:  # a policy's files are gone, a model would not load, the database went away: say why
        log.exception("evaluation round %s failed", round_.pk)
        EvaluationRound.fail(round_.pk, f"{type(error).__name__}: {error}")
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def _evaluate(round_: EvaluationRound) -> None:
    from .ml.device import pick_device

    compared = compared_policies(round_)
    # Every policy's files first: a round whose third policy is gone fails now, not after hours of sampling.
    files = {policy.pk: policies.policy_files(policy) for policy in compared}
    reward_model = round_.reward_model
    if reward_model is not None:
        try:
            registry.scorer_for(reward_model.path)  # loaded now (and kept): its files may be gone
        except OSError as error:
            raise RuntimeError(f"Reward model {reward_model} cannot be loaded: {error}") from None
    # Prompts written by an earlier attempt have answers: skipped.
    prompts = list(
        Prompt.objects.filter(queue=round_.queue, excluded=False, answers__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")
    )
    samples = {policy.pk: Samples(round_, policy) for policy in compared}
    done = sum(prompt_id in samples[policy.pk].answers for prompt_id, _ in prompts for policy in compared)
    rounds = EvaluationRound.objects.filter(pk=round_.pk)
    rounds.update(prompts_total=len(prompts) * len(compared), prompts_done=done, errors=[], error="")
    sampling = {key: getattr(round_, key) for key in SAMPLING}
    errors = _Errors()
    device = pick_device()
    for policy in compared:
        todo = [(pk, text) for pk, text in prompts if pk not in samples[policy.pk].answers]
        if not todo:
            continue
        model, tokenizer = load_generator(files[policy.pk].name_or_path, files[policy.pk].gguf_file)
        model.to(device)
        for prompt_id, text in todo:
            try:
                texts = answer_prompt(model, tokenizer, text, round_.answers_per_policy, **sampling, device=device)
            except Exception as error:  # one prompt too long for this model, an empty answer: recorded, go on
                log.warning("evaluation round %s: %s failed on prompt %s: %s", round_.pk, policy, prompt_id, error)
                errors.add(prompt_id, policy, error)
            else:
                samples[policy.pk].add(prompt_id, texts)
            done += 1
            rounds.update(prompts_done=done, errors=errors.rows)
        del model, tokenizer
        gc.collect()  # the next policy's model takes its place in memory
    for prompt_id, text in prompts:
        answers = {policy.pk: samples[policy.pk].answers.get(prompt_id) for policy in compared}
        if any(texts is None for texts in answers.values()):
            continue  # a policy failed on it (recorded above): no answers, so no task
        try:
            if not _write_prompt(round_, prompt_id, text, answers, sampling=sampling, reward_model=reward_model):
                errors.add(prompt_id, None, RefusedAnswer("The prompt got answers from elsewhere meanwhile; left out."))
        except Exception as error:  # the reward model failed on it: recorded, go on
            log.warning("evaluation round %s: prompt %s could not be written: %s", round_.pk, prompt_id, error)
            errors.add(prompt_id, None, error)
    rounds.update(errors=errors.rows)
    sync_tasks(round_.queue)
    EvaluationRound.finish(round_.pk, JobStatus.SUCCEEDED)
    shutil.rmtree(samples_dir(round_), ignore_errors=True)  # every sample is in the database (or failed) now


def _write_prompt(
    round_: EvaluationRound, prompt_id: int, text: str, answers: dict[int, list[str]], *, sampling: dict,
    reward_model: RewardModel | None,
) -> bool:
    """Store every policy's answers to one prompt at once, in a seeded order that hides their source; False if the
    prompt has answers already (from elsewhere, or a redelivered message)."""
    rows = [(policy_id, answer) for policy_id, texts in answers.items() for answer in texts]
    # The same round and prompt always give the same order (a resumed round too); each prompt draws its own.
    random.Random(f"{round_.pk}:{round_.seed}:{prompt_id}").shuffle(rows)
    rewards = None
    if reward_model is not None:  # scored once, as written: the predicted win rate reads these
        rewards = registry.score_answers(reward_model.path, text, [answer for _, answer in rows])
    meta = {"evaluation_round": round_.pk, **sampling}
    with transaction.atomic():
        # The lock makes a second worker (a redelivered message) writing the same prompt store nothing.
        Prompt.objects.select_for_update().filter(pk=prompt_id).exists()
        if Answer.objects.filter(prompt_id=prompt_id).exists():
            return False
        # Inserted in position order: the ids, which labelers' pages carry, follow the shuffle too.
        Answer.objects.bulk_create(
            Answer(
                prompt_id=prompt_id, position=position, text=answer, model=blind_model_name(round_),
                meta=meta | {"policy": policy_id} | ({} if rewards is None else {"reward": float(rewards[position])}),
            )
            for position, (policy_id, answer) in enumerate(rows)
        )  # fmt: skip
    return True

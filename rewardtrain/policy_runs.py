"""Policy runs: optimising a policy against the reward model (rejection sampling, online RL) or on pairs (DPO).

Each method is rewardtrain.ml's (TRL underneath); this module picks the data, runs the method in the worker (the
training queue) and evaluates the result on prompts it did not train on, next to the policy it started from:
mean reward of each (same prompts, same sampling settings and seed), KL to the reference, and the win rate
the reward model predicts for the new policy over its parent. The result is registered as a policy of the
method's kind with its lineage (parent, reward model, data).

- rejection-sampling: N answers per training prompt from the policy, each scored by the reward model; the
  best one per prompt becomes a demonstration, and the policy is fine-tuned on them (rewardtrain.ml.sft).
  Reports the mean reward of the best-of-N and of single samples.
- rl: RLOO or GRPO (TRL) with the reward model as the reward and a KL penalty (beta) to the reference.
- dpo: DPO (TRL) on a finished pair dataset's training pairs, the starting policy as the reference; it
  evaluates on the dataset's validation prompts (with the reward model, if there is one, for the rewards).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core import audit
from core.jobs import JobStatus, resend_stale
from labeling.models import Prompt, Queue

from . import policies, registry
from .ml.progress import TrainingCancelled
from .models import PairDataset, Policy, PolicyRun, RewardModel
from .runs import LOST_REASON, Reporter, run_training_job

Method = PolicyRun.Method
HYPERPARAMETERS = (
    "algorithm", "beta", "samples_per_prompt", "learning_rate", "epochs", "max_new_tokens", "temperature",
    "evaluation_fraction", "seed",
)  # fmt: skip
EVALUATION_PROMPTS = 32  # held-out prompts evaluated at most (each costs two samplings and a KL pass)
EVALUATION_SAMPLES = 2  # answers per held-out prompt and model
BEST_OF_N_CHUNK = 8  # prompts sampled at once in rejection sampling (and how often its progress is written)


def run_dir(run: PolicyRun) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "policy-runs" / str(run.pk)


def request_policy_run(
    *, method: str, policy: Policy, queues: Sequence[Queue] = (), reward_model: RewardModel | None = None,
    dataset: PairDataset | None = None, reference: Policy | None = None, output_name: str = "", user=None,
    **hyperparameters,
) -> PolicyRun:  # fmt: skip
    """Record a policy run and send it to the training queue once the record is committed.

    Rejection sampling and RL need queues and a reward model (the active one unless given); DPO needs a finished
    pair dataset. Raises ValueError naming what is wrong.
    """
    from .tasks import optimise_policy_task  # here: the tasks module imports this one

    if method not in Method.values:
        raise ValueError(f"Unknown method {method!r}: choose one of {', '.join(Method.values)}.")
    policies.check_usable(policy)
    if reference is not None:
        policies.check_usable(reference)
    unknown = set(hyperparameters) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"Policy runs take no {sorted(unknown)[0]!r}.")
    # The reward model scores the evaluation of every method (DPO can do without one: then KL only).
    reward_model = reward_model or RewardModel.objects.filter(is_active=True).first()
    if method == Method.DPO:
        if dataset is None or dataset.status != JobStatus.SUCCEEDED:
            raise ValueError("DPO trains on a pair dataset: choose a finished one.")
        queues = ()
    else:
        if not queues:
            raise ValueError("Choose the queues whose prompts the policy trains on.")
        if reward_model is None:
            raise ValueError("No reward model: train one and make it active, or choose one.")
        dataset = None
    with transaction.atomic():
        run = PolicyRun.objects.create(
            method=method, policy=policy, reference=reference, reward_model=reward_model, dataset=dataset,
            output_name=output_name or f"{policy.name}-{method}", created_by=user, **hyperparameters,
        )  # fmt: skip
        run.queues.set(queues)
        audit.record(actor=user, action="policy_run.request", target=run, detail={
            "method": method, "policy": policy.pk, "reference": reference and reference.pk,
            "reward_model": reward_model and reward_model.pk, "dataset": dataset and dataset.pk,
            "queues": [queue.pk for queue in queues], **hyperparameters,
        })  # fmt: skip
        run.send_task(optimise_policy_task)
    return run


# The worker -------------------------------------------------------------------------------------


def _prompt_split(run: PolicyRun) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts) of the run's queues, split by prompt with the run's seed.

    A prompt is drawn by its content hash, not its database id: the same prompts split the same way wherever
    they were imported.
    """
    from .ml.pairs import split_by_prompt

    prompts = Prompt.objects.filter(queue__in=run.queues.all(), excluded=False).order_by("pk")
    rows = list(prompts.values_list("content_hash", "text"))
    if len(rows) < 2:
        raise ValueError(f"The run's queues hold {len(rows)} prompt(s); it needs at least 2 (one to hold out).")
    keys = [int(hashlib.blake2b(key.encode(), digest_size=7).hexdigest(), 16) for key, _ in rows]
    held_out = split_by_prompt(keys, validation_fraction=run.evaluation_fraction, seed=run.seed)
    return ([text for (_, text), out in zip(rows, held_out, strict=True) if not out],
            [text for (_, text), out in zip(rows, held_out, strict=True) if out])  # fmt: skip


def _dpo_data(run: PolicyRun) -> tuple[list[dict], list[str]]:
    """(training pairs, held-out prompts) of the run's pair dataset, as its own split made them."""
    from .ml import pairs

    frame = pairs.read_pair_dataset(Path(settings.ARTIFACTS_DIR) / run.dataset.file)
    train = frame[frame["split"] == pairs.TRAIN]
    validation = frame[frame["split"] == pairs.VALIDATION]
    rows = [{"prompt": str(r.prompt), "chosen": str(r.chosen), "rejected": str(r.rejected)} for r in train.itertuples()]
    return rows, sorted({str(prompt) for prompt in validation["prompt"]})


def _reward_fn(run: PolicyRun):
    from .ml.policy_eval import reward_function

    return reward_function(registry.scorer_for(run.reward_model.path)) if run.reward_model else None


def _rejection_sampling(run: PolicyRun, reporter: Reporter, files, prompts: list[str], reward_fn) -> tuple:
    """Best-of-N on the training prompts (kept in the run's directory, so a resumed run samples nothing again),
    then SFT on the best answers. Returns (the SFT result, the best-of-N figures)."""
    from .ml import sft
    from .ml.device import pick_device
    from .ml.policy_opt import best_of_n, load_policy

    samples_file = run_dir(run) / "best-of-n.jsonl"
    if not samples_file.is_file():
        model, tokenizer = load_policy(files)
        device = pick_device()
        model.to(device)
        rows, best, single = [], [], []
        for start in range(0, len(prompts), BEST_OF_N_CHUNK):
            chunk = best_of_n(
                model, tokenizer, prompts[start : start + BEST_OF_N_CHUNK], reward_fn, run.samples_per_prompt,
                temperature=run.temperature, top_p=1.0, max_new_tokens=run.max_new_tokens, seed=run.seed + start,
                device=device,
            )  # fmt: skip
            for item in chunk.per_prompt:
                rows.append({"prompt": item.prompt, "completion": item.best, "reward": item.best_reward,
                             "mean_reward": sum(item.rewards) / len(item.rewards)})  # fmt: skip
            reporter.on_step(start + len(chunk.per_prompt), len(prompts), {})
            if reporter.should_stop():
                raise TrainingCancelled("Rejection sampling was cancelled while sampling; nothing was kept.")
            best.extend(item.best_reward for item in chunk.per_prompt)
            single.extend(r for item in chunk.per_prompt for r in item.rewards)
        del model
        samples_file.parent.mkdir(parents=True, exist_ok=True)
        partial = samples_file.with_suffix(".partial")
        partial.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        partial.replace(samples_file)
    rows = [json.loads(line) for line in samples_file.open(encoding="utf-8")]
    figures = {
        "best_of_n": run.samples_per_prompt,
        "mean_best_of_n_reward": sum(row["reward"] for row in rows) / len(rows),
        "mean_single_sample_reward": sum(row["mean_reward"] for row in rows) / len(rows),
    }
    reporter.new_stage()  # fine-tuning counts its own steps
    train_rows, validation_rows = sft.split_by_prompt(rows, 0.1, run.seed)
    config = sft.SFTConfig(
        base=files.name_or_path, base_gguf_file=files.gguf_file, output_dir=str(run_dir(run) / "sft"),
        epochs=run.epochs, learning_rate=run.learning_rate, seed=run.seed, max_length=1024,
        save_steps=settings.POLICY_CHECKPOINT_STEPS, preview_prompts=0,
    )  # fmt: skip
    return sft.train_sft(train_rows, validation_rows, config, on_progress=reporter.on_step,
                         should_stop=reporter.should_stop), figures  # fmt: skip


def _evaluate(run: PolicyRun, model_dir: str, prompts: list[str], reward_fn) -> dict:
    """The new policy against its parent on held-out prompts: rewards, KL to the reference, predicted win rate."""
    from .ml.device import pick_device
    from .ml.model_sources import ModelFiles
    from .ml.policy_eval import evaluate_policy
    from .ml.policy_opt import load_policy

    device = pick_device()
    new, tokenizer = load_policy(ModelFiles(model_dir))
    parent, _ = load_policy(policies.policy_files(run.policy), role="parent")
    reference = parent
    if run.reference is not None:
        reference, _ = load_policy(policies.policy_files(run.reference), role="reference")
    for model in {id(m): m for m in (new, parent, reference)}.values():
        model.to(device)
    if reward_fn is None:  # DPO with no reward model in the registry: the rewards cannot be told
        reward_fn = lambda prompts, answers: [0.0] * len(answers)  # noqa: E731
        figures = {"rewards": "no reward model"}
    else:
        figures = {}
    figures |= evaluate_policy(
        new, parent, reference, tokenizer, prompts[:EVALUATION_PROMPTS], reward_fn,
        samples_per_prompt=EVALUATION_SAMPLES, temperature=run.temperature, top_p=1.0,
        max_new_tokens=run.max_new_tokens, seed=run.seed, device=device,
    )  # fmt: skip
    if "rewards" in figures:
        for key in ("mean_reward", "parent_mean_reward", "predicted_win_rate"):
            figures[key] = None
    return figures


def _optimise(run: PolicyRun, reporter: Reporter) -> tuple[str, str, list[str], dict]:
    """Run the run's method: (the new model's directory, its data version, held-out prompts, the method's figures)."""
    from .ml import policy_opt

    files = policies.policy_files(run.policy)
    common = {"learning_rate": run.learning_rate, "epochs": run.epochs, "seed": run.seed,
              "save_steps": settings.POLICY_CHECKPOINT_STEPS, "on_progress": reporter.on_step,
              "should_stop": reporter.should_stop}  # fmt: skip
    if run.method == Method.DPO:
        pairs, held_out = _dpo_data(run)
        result = policy_opt.train_dpo(files, pairs, run_dir(run), beta=run.beta, **common)
        return str(result.model_dir), f"{run.dataset} ({len(pairs)} training pairs)", held_out, {"steps": result.steps}
    prompts, held_out = _prompt_split(run)
    queues = ", ".join(str(queue) for queue in run.queues.order_by("pk"))
    data_version = f"prompts of {queues} ({len(prompts)} trained on, {len(held_out)} held out)"
    if run.method == Method.RL:
        result = policy_opt.train_rl(
            files, policies.policy_files(run.reference) if run.reference else None, prompts, _reward_fn(run),
            run_dir(run), algorithm=run.algorithm, beta=run.beta, num_generations=run.samples_per_prompt,
            max_completion_length=run.max_new_tokens, temperature=run.temperature, **common,
        )  # fmt: skip
        return str(result.model_dir), data_version, held_out, {"steps": result.steps}
    result, figures = _rejection_sampling(run, reporter, files, prompts, _reward_fn(run))
    return str(result.model_dir), data_version, held_out, figures | {"steps": result.metrics["steps"]}


def execute_policy_run(run_id: int) -> None:
    """The policy-run task's body: optimise (resuming from a checkpoint), evaluate, record the new policy."""

    def train(run: PolicyRun, reporter: Reporter) -> tuple[str, str, dict]:
        model_dir, data_version, held_out, figures = _optimise(run, reporter)
        return model_dir, data_version, figures | {"evaluation": _evaluate(run, model_dir, held_out, _reward_fn(run))}

    def record(run: PolicyRun, outcome: tuple[str, str, dict], reporter: Reporter) -> None:
        model_dir, data_version, metrics = outcome
        policy = policies.record_trained_policy(
            name=run.output_name, kind=run.method, parent=run.policy, path=model_dir, data_version=data_version,
            metrics=metrics["evaluation"], reward_model=run.reward_model, user=run.created_by,
        )  # fmt: skip
        PolicyRun.finish(
            run.pk, JobStatus.SUCCEEDED, metrics=metrics, history=reporter.history, model_dir=model_dir,
            output=policy, progress_percent=100, eta_seconds=0,
        )  # fmt: skip

    run_training_job(
        PolicyRun, run_id, related=("policy",), train=train, record=record,
        lost_reason=LOST_REASON,
    )  # fmt: skip


def requeue_stale_policy_runs() -> int:
    """Send again the policy runs that lost their worker or their message (core.jobs.resend_stale)."""
    from .tasks import optimise_policy_task  # here: the tasks module imports this one

    return resend_stale(PolicyRun, optimise_policy_task)

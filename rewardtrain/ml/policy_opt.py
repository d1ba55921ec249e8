"""Policy optimisation with TRL: RL against a reward (RLOO or GRPO), DPO on preference pairs, and best-of-N.

Thin wrappers: TRL's trainers do the work; this module adds what the platform needs around them.
- Models come from disk only (`model_sources.load_from_disk`): a directory written by save_pretrained, or
  `ModelFiles(directory, gguf_file)` for a GGUF file (dequantized). The policy trains in float32 weights,
  under bf16 autocast on a GPU that supports it (fp16 on one that does not), in float32 on CPU and MPS.
- The reference model, which the KL term keeps the policy near, is the starting policy unless another is
  given. TRL 1.16's RLOO and GRPO trainers take no reference model: they load one with their own
  from_pretrained of the policy's path (which knows nothing of GGUF files); `_handing_over` gives them
  the one loaded here instead.
- Prompts go in the model's chat format when it has one, as `sampling.sample_answers` samples them. TRL
  1.16 does not cut long prompts, so `max_prompt_length` keeps each prompt's last tokens here.
- Progress, cancel and resume: `on_progress(step, total_steps, entry)` gets each step's history entry;
  when `should_stop()` says so, training ends after the current step with a checkpoint saved and
  `progress.TrainingCancelled` is raised; a later call with the same output_dir resumes from its latest
  complete checkpoint (a killed worker loses at most `save_steps` steps). One output_dir, one run.
- The trained model (and tokenizer) is saved to output_dir/model; the checkpoints are removed after it.

The log keys read from TRL 1.16: RLOO and GRPO log "reward" (the mean reward of the step's samples,
before the KL term) and, when beta > 0, "kl" (per token, mean over the step's sampled tokens: RLOO the
log-ratio of the sampling policy to the reference, GRPO the non-negative k3 estimate); DPO logs
"rewards/margins" and "rewards/accuracies" (its implicit rewards, beta x log-ratio to the reference);
the transformers Trainer logs "loss".
"""
from __future__ import annotations

import copy
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, PrinterCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .device import choose_precision, pick_device
from .model_sources import ModelFiles, load_from_disk
from .policy_eval import RewardFn, text_of
from .progress import TrainingCancelled
from .sampling import sample_answers

PolicySource = str | Path | ModelFiles
ProgressFn = Callable[[int, int, dict[str, float]], None]

# Our history field -> TRL's log key.
RL_LOG_KEYS = {"loss": "loss", "reward": "reward", "kl": "kl", "completion_length": "completions/mean_length"}
DPO_LOG_KEYS = {"loss": "loss", "reward_margin": "rewards/margins", "reward_accuracy": "rewards/accuracies"}
RL_ALGORITHMS = ("rloo", "grpo")
TRAINER_STATE_FILE = "trainer_state.json"  # written last: a checkpoint without it was cut short


@dataclass(frozen=True)
class PolicyTrainResult:
    model_dir: Path
    steps: int
    history: list[dict[str, float]]  # one entry per step: "step" and the fields of RL_LOG_KEYS or DPO_LOG_KEYS
    resumed_from_step: int | None = None


@dataclass(frozen=True)
class PromptBestOfN:
    prompt: str
    samples: list[str]
    rewards: list[float]

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.rewards))  # the first of equally good samples

    @property
    def best(self) -> str:
        return self.samples[self.best_index]

    @property
    def best_reward(self) -> float:
        return self.rewards[self.best_index]


@dataclass(frozen=True)
class BestOfN:
    per_prompt: list[PromptBestOfN] = field(repr=False)
    mean_best_reward: float  # what picking the best of n earns
    mean_sample_reward: float  # what a single sample earns


def load_policy(source: PolicySource, *, role: str = "policy"):
    """(model in float32, tokenizer) of a causal LM on disk; a readable error naming the path if it is not there."""
    files = source if isinstance(source, ModelFiles) else ModelFiles(str(source))
    path = Path(files.name_or_path)
    needed = path / (files.gguf_file or "config.json")
    if not needed.is_file():
        raise FileNotFoundError(
            f"No {role} model in {path}: {needed.name} is missing (give a directory written by save_pretrained, "
            "or the directory and name of a GGUF file)."
        )
    tokenizer = load_from_disk(AutoTokenizer, str(path), gguf_file=files.gguf_file)
    options: dict[str, Any] = {}
    if files.gguf_file:
        # Unpacked into a plain model: the Trainer refuses to train one that keeps its GGUF quantizer.
        options = {"gguf_file": files.gguf_file, "quantization_config": GgufConfig(dequantize=True)}
    # float32 weights whatever the files hold: optimiser updates vanish in bf16 weights.
    model = load_from_disk(AutoModelForCausalLM, str(path), dtype=torch.float32, **options)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # as TRL and sampling do; padded positions are masked
    return model, tokenizer


def precision_args(device: torch.device) -> dict[str, bool]:
    """The TrainingArguments that pick the device and precision (TRL would turn bf16 on even on a CPU)."""
    dtype = choose_precision(device)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16, "use_cpu": device.type == "cpu"}


def train_rl(
    policy: PolicySource,
    reference: PolicySource | None,
    train_prompts: Sequence[str],
    reward_fn: RewardFn,
    output_dir: Path,
    *,
    algorithm: str = "rloo",
    beta: float = 0.05,
    num_generations: int = 4,
    prompts_per_step: int = 2,
    learning_rate: float = 1e-6,
    max_steps: int | None = None,
    epochs: float = 1.0,
    max_prompt_length: int = 512,
    max_completion_length: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    save_steps: int = 50,
    device: str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PolicyTrainResult:
    """Optimise `policy` for `reward_fn` on `train_prompts` with RLOO or GRPO, kept near the reference by beta x KL.

    Each step samples `num_generations` answers to each of `prompts_per_step` prompts; the answers of a
    prompt are each other's baseline. `reference` None: the starting policy (a reference must share the
    policy's tokenizer). See the module docstring.
    """
    import trl
    from datasets import Dataset

    if algorithm not in RL_ALGORITHMS:
        raise ValueError(f"Unknown RL algorithm {algorithm!r}: use {' or '.join(RL_ALGORITHMS)}.")
    trainer_class, config_class = {
        "rloo": (trl.RLOOTrainer, trl.RLOOConfig), "grpo": (trl.GRPOTrainer, trl.GRPOConfig)
    }[algorithm]  # fmt: skip
    output_dir = Path(output_dir)
    model, tokenizer = load_policy(policy)
    reference_model = None  # beta 0: no KL term, no reference model
    if beta:
        reference_model = load_policy(reference, role="reference")[0] if reference else copy.deepcopy(model)
    args = config_class(
        **_common_args(output_dir, pick_device(device), learning_rate, max_steps, epochs, seed, save_steps),
        beta=beta,
        num_generations=num_generations,
        per_device_train_batch_size=prompts_per_step * num_generations,  # answers per step, whole prompts
        max_completion_length=max_completion_length,
        temperature=temperature,
        top_p=top_p,
    )
    prompts = [_chat_prompt(tokenizer, _keep_last_tokens(tokenizer, p, max_prompt_length)) for p in train_prompts]
    job = _JobCallback(RL_LOG_KEYS, on_progress, should_stop)
    with _handing_over(reference_model, to=trainer_class):
        trainer = trainer_class(
            model=model,
            reward_funcs=_trl_reward(reward_fn),
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=tokenizer,
            callbacks=[job],
        )
    return _train(trainer, job, output_dir)


def train_dpo(
    policy: PolicySource,
    train_pairs: Sequence[Mapping[str, str]],
    output_dir: Path,
    *,
    beta: float = 0.1,
    pairs_per_step: int = 8,
    learning_rate: float = 1e-6,
    max_steps: int | None = None,
    epochs: float = 1.0,
    max_length: int = 1024,
    seed: int = 0,
    save_steps: int = 50,
    device: str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PolicyTrainResult:
    """DPO of `policy` on pairs {prompt, chosen, rejected} (plain text); the reference is the starting policy.

    Sequences longer than max_length tokens lose their end (TRL's only truncation). See the module docstring.
    """
    import trl
    from datasets import Dataset

    output_dir = Path(output_dir)
    model, tokenizer = load_policy(policy)
    args = trl.DPOConfig(
        **_common_args(output_dir, pick_device(device), learning_rate, max_steps, epochs, seed, save_steps),
        beta=beta,
        max_length=max_length,
        per_device_train_batch_size=pairs_per_step,
    )
    job = _JobCallback(DPO_LOG_KEYS, on_progress, should_stop)
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # DPOTrainer would load it again with its own from_pretrained
        args=args,
        train_dataset=Dataset.from_list([_chat_pair(tokenizer, pair) for pair in train_pairs]),
        processing_class=tokenizer,
        callbacks=[job],
    )
    return _train(trainer, job, output_dir)


def best_of_n(
    model,
    tokenizer,
    prompts: list[str],
    reward_fn: RewardFn,
    n: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    device,
) -> BestOfN:
    """n samples per prompt, each with its reward, and the best of them; the same seed gives the same result."""
    model.eval()
    answers = sample_answers(
        model, tokenizer, prompts, n,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, device=device,
    )  # fmt: skip
    rewards = reward_fn([prompt for prompt in prompts for _ in range(n)], [a for samples in answers for a in samples])
    per_prompt = [
        PromptBestOfN(prompt, samples, [float(r) for r in rewards[i * n : (i + 1) * n]])
        for i, (prompt, samples) in enumerate(zip(prompts, answers, strict=True))
    ]
    return BestOfN(
        per_prompt=per_prompt,
        mean_best_reward=float(np.mean([p.best_reward for p in per_prompt])),
        mean_sample_reward=float(np.mean(rewards)),
    )


def _common_args(
    output_dir: Path,
    device: torch.device,
    learning_rate: float,
    max_steps: int | None,
    epochs: float,
    seed: int,
    save_steps: int,
) -> dict[str, Any]:
    return dict(
        output_dir=str(output_dir),
        learning_rate=learning_rate,
        max_steps=max_steps or -1,  # -1: as many steps as `epochs` take
        num_train_epochs=epochs,
        seed=seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=1,  # an older checkpoint goes only once the newest is written in full
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Dropout would add noise to the policy's log-probs against the reference's (a KL > 0 at the start).
        disable_dropout=True,
        # Memory is what a GPU lacks; on a CPU recomputing activations only costs time.
        activation_checkpointing=device.type == "cuda",
        **precision_args(device),
    )


def _handing_over(reference_model, *, to) -> AbstractContextManager:
    """While `to` is built, its own load of a reference model returns `reference_model` (see the module docstring)."""
    return mock.patch.object(sys.modules[to.__module__], "create_model_from_path", lambda *_, **__: reference_model)


def _chat_prompt(tokenizer, text: str) -> str | list[dict[str, str]]:
    """The prompt as TRL takes it: a one-message conversation for a chat model (TRL applies the template)."""
    return [{"role": "user", "content": text}] if tokenizer.chat_template else text


def _chat_pair(tokenizer, pair: Mapping[str, str]) -> dict[str, Any]:
    if not tokenizer.chat_template:
        return {"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}
    return {
        "prompt": [{"role": "user", "content": pair["prompt"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
    }


def _keep_last_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """The end of `text` that is its last `max_tokens` tokens, cut at a token boundary (the beginning goes first)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= max_tokens else text[offsets[-max_tokens][0] :]


def _trl_reward(reward_fn: RewardFn) -> Callable[..., list[float]]:
    """`reward_fn` as TRL calls a reward function: keyword arguments, conversations possibly, extra columns."""

    def reward(prompts: Sequence, completions: Sequence, **_trl_extras) -> list[float]:
        return [float(r) for r in reward_fn([text_of(p) for p in prompts], [text_of(c) for c in completions])]

    return reward  # TRL logs it as rewards/reward/mean


class _JobCallback(TrainerCallback):
    """Reports each logged step to on_progress; stops training after a step, checkpoint saved, on should_stop()."""

    def __init__(self, log_keys: Mapping[str, str], on_progress: ProgressFn | None, should_stop):
        self.log_keys, self.on_progress, self.should_stop = log_keys, on_progress, should_stop
        self.cancelled = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.should_stop is not None and state.global_step < state.max_steps and self.should_stop():
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.on_progress is not None and logs and "loss" in logs:
            self.on_progress(state.global_step, state.max_steps, _history_entry(state.global_step, logs, self.log_keys))


def _history_entry(step: int, logs: Mapping[str, Any], log_keys: Mapping[str, str]) -> dict[str, float]:
    logged = {ours: float(logs[theirs]) for ours, theirs in log_keys.items() if logs.get(theirs) is not None}
    return {"step": step} | logged


def _train(trainer, job: _JobCallback, output_dir: Path) -> PolicyTrainResult:
    """Train (resuming from the latest complete checkpoint), then save the model and drop the checkpoints."""
    checkpoint = _latest_checkpoint(output_dir)
    trainer.remove_callback(PrinterCallback)  # progress goes to on_progress, not to stdout
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    state = trainer.state
    if job.cancelled:
        raise TrainingCancelled(
            f"Training was cancelled at step {state.global_step} of {state.max_steps}; "
            f"a new call with output_dir {output_dir} resumes from there."
        )
    model_dir = output_dir / "model"
    trainer.save_model(str(model_dir))
    for old in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        shutil.rmtree(old, ignore_errors=True)
    history = [_history_entry(log["step"], log, job.log_keys) for log in state.log_history if "loss" in log]
    return PolicyTrainResult(
        model_dir=model_dir,
        steps=state.global_step,
        history=history,
        resumed_from_step=_checkpoint_step(checkpoint) if checkpoint else None,
    )


def _checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-"))


def _latest_checkpoint(output_dir: Path) -> Path | None:
    complete = [
        path
        for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit() and (path / TRAINER_STATE_FILE).is_file()
    ]
    return max(complete, key=_checkpoint_step, default=None)

"""Supervised fine-tuning (SFT) of a causal language model on demonstrations, with TRL's SFTTrainer.

`split_by_prompt` splits the rows of an SFT export into training and validation prompts. `train_sft`
fine-tunes a base model (a model directory, or a GGUF file in one) on the training rows with the loss on
the answer tokens only, and measures the validation loss of the base before and of the result after, with
the same tokens and masks. The prompt is a user turn and the demonstration the assistant's turn when the
tokenizer has a chat template, else the two are joined as plain text. It checkpoints every `save_steps`
optimizer steps, and a call with the same config and data resumes from the newest checkpoint (a killed
worker resumes, it does not restart). The model, its tokenizer and `sft_card.json` are written to a
temporary directory and renamed to output_dir/model, so that directory is never half-written.

Under `accelerate launch` (or torchrun) the Trainer runs DistributedDataParallel, gloo on CPUs; only the
main process writes files and samples previews. CLI:

    python -m rewardtrain.ml.sft --train train.jsonl --validation val.jsonl --base DIR --out DIR [--epochs 2 ...]
    accelerate launch --multi_gpu --num_processes 2 -m rewardtrain.ml.sft --train ... (same flags)

(Without --multi_gpu, accelerate launch starts a single process where it finds no GPU, whatever
--num_processes says; with it, it starts them through torchrun, CPUs included.)

torch, transformers, TRL and peft are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import pairs
from .model_sources import stay_offline
from .progress import TrainingCancelled

CARD_FILE = "sft_card.json"
MODEL_DIR = "model"  # output_dir/model: the finished model
CHECKPOINTS_DIR = "checkpoints"  # output_dir/checkpoints: the Trainer's checkpoint-N folders
RUN_FILE = "run.json"  # in CHECKPOINTS_DIR: the hash of the config and data its checkpoints belong to


@dataclass
class SFTConfig:
    base: str  # model directory (from_pretrained path)
    output_dir: str  # where the fine-tuned model, checkpoints and card go
    base_gguf_file: str | None = None  # a GGUF file inside `base` (SmolLM2 ships as GGUF; dequantized on load)
    epochs: float = 2.0
    learning_rate: float = 5e-5
    max_length: int = 512  # tokens of prompt + completion (truncated)
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    seed: int = 0
    lora: bool = False  # peft LoRA adapters (merged into the saved model at the end)
    lora_r: int = 8
    lora_alpha: int = 16
    max_steps: int = -1  # > 0 overrides epochs (tests)
    preview_prompts: int = 4  # validation prompts shown with base vs fine-tuned answers
    preview_max_new_tokens: int = 64
    save_steps: int = 50  # checkpoint every N optimizer steps (resume after a killed worker)
    device: str | None = None  # None: pick (rewardtrain.ml.device); GPU: bf16 where supported
    preview_temperature: float = 0.7  # previews sample with these settings and `seed`, the same for both models
    preview_top_p: float = 0.9
    logging_steps: int = 10  # a history entry (and an on_progress call with logs) every N optimizer steps
    eval_steps: int = 0  # > 0: the validation loss every N steps too (the base's and the result's are always measured)

    def weight_fields(self) -> dict[str, Any]:
        """The fields that decide the trained weights (a checkpoint is resumed only if they match)."""
        ignored = {"output_dir", "save_steps", "device", "logging_steps", "eval_steps"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored and not k.startswith("preview")}


@dataclass
class SFTResult:
    model_dir: str
    metrics: dict[str, Any]
    # Per logged step: step, epoch, loss, learning_rate, and validation_loss when evaluated (step 0: the base's).
    history: list[dict[str, Any]]
    previews: list[dict[str, str]]  # [{prompt, reference, base, fine_tuned}]; empty on processes other than the main


# --- train / validation split ----------------------------------------------------------------------


def split_by_prompt(rows: list[dict], validation_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows); all demonstrations of a prompt land on the same side.

    Prompts are told apart by prompt_id where the rows have one, else by their text. The draw is that of
    `pairs.split_by_prompt`, so with the same seed a prompt lands on the same side as in the reward-model
    pair datasets, and at least one prompt lands on each side.
    """
    keys = [_prompt_key(row) for row in rows]
    prompts = len(set(keys))
    if prompts < 2:
        raise ValueError(
            f"Splitting needs demonstrations of at least 2 different prompts (one to train on, one to validate "
            f"with); these rows have {prompts}."
        )
    validation = pairs.split_by_prompt(keys, validation_fraction=validation_fraction, seed=seed)
    return (
        [row for row, held_out in zip(rows, validation, strict=True) if not held_out],
        [row for row, held_out in zip(rows, validation, strict=True) if held_out],
    )


def _prompt_key(row: dict) -> int:
    if row.get("prompt_id") is not None:
        return int(row["prompt_id"])
    # A 63-bit number from the text: the split draws from (seed, integer prompt id).
    return int.from_bytes(hashlib.blake2b(row["prompt"].encode(), digest_size=8).digest(), "big") >> 1


# --- training ----------------------------------------------------------------------------------------


def train_sft(
    train_rows: list[dict],
    validation_rows: list[dict],
    config: SFTConfig,
    *,
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SFTResult:
    """Fine-tune config.base on the training demonstrations (or resume doing so); see the module docstring.

    on_progress(step, total_steps, logs) is called on the main process after each optimizer step (logs is
    empty except on logging steps) and with each log: the base's validation loss at step 0, the training
    loss, the validation loss, the end-of-training summary.
    should_stop() is polled after each optimizer step; when it returns True the step's checkpoint is saved
    and TrainingCancelled is raised.
    """
    from accelerate import PartialState

    from .train import save_model_dir, state_dict_sha256

    started = time.perf_counter()
    trainer = make_trainer(config, train_rows, validation_rows)  # under a launcher, this joins the process group
    tokenizer, args, state = trainer.processing_class, trainer.args, PartialState()
    output_dir = Path(config.output_dir)
    run_hash = _run_hash(config, train_rows, state.num_processes)
    checkpoint = _prepare_checkpoints(output_dir / CHECKPOINTS_DIR, run_hash, state)
    # The base's validation loss is measured by train() itself, before the first step, and kept in the log
    # that checkpoints carry on. (trainer.evaluate() before train() would mark the model as prepared by
    # accelerate, which then leaves it out of DistributedDataParallel: every process would train alone.)
    args.eval_on_start = checkpoint is None
    shown = _preview_rows(validation_rows, config.preview_prompts)
    base_answers = _sample(trainer.model, tokenizer, shown, config, args.device) if state.is_main_process else []

    callback = _progress_callback(on_progress, should_stop)
    trainer.add_callback(callback)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    if callback.cancelled:
        raise TrainingCancelled(
            f"Fine-tuning was cancelled at step {trainer.state.global_step} of {trainer.state.max_steps}; "
            "its checkpoint is kept, and starting it again resumes from there."
        )
    validation_loss = trainer.evaluate()["eval_loss"]
    history = _history(trainer.state.log_history)
    base_loss = history[0]["validation_loss"]  # step 0

    model = trainer.model  # never the DistributedDataParallel wrapper
    if config.lora:
        model = model.merge_and_unload()  # a plain model: loads without peft
    previews = []
    if state.is_main_process:
        tuned_answers = _sample(model, tokenizer, shown, config, args.device)
        previews = [
            {"prompt": row["prompt"], "reference": row["completion"], "base": base, "fine_tuned": tuned}
            for row, base, tuned in zip(shown, base_answers, tuned_answers, strict=True)
        ]
    logged = [entry["loss"] for entry in history if "loss" in entry]
    metrics = {
        "base_validation_loss": base_loss,
        "base_perplexity": math.exp(base_loss),
        "validation_loss": validation_loss,
        "perplexity": math.exp(validation_loss),
        "train_loss": logged[-1] if logged else output.training_loss,
        "train_rows": len(train_rows),
        "validation_rows": len(validation_rows),
        "train_prompts": len({_prompt_key(row) for row in train_rows}),
        "validation_prompts": len({_prompt_key(row) for row in validation_rows}),
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - started,
        "chat_template": bool(tokenizer.chat_template),
        "device": str(args.device),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "float32",
        "world_size": state.num_processes,
        "weights_sha256": state_dict_sha256(model),
    }
    model_dir = output_dir / MODEL_DIR
    if state.is_main_process:
        card = _card(config, metrics, history, previews)
        save_model_dir(model, tokenizer, model_dir, CARD_FILE, card)
        shutil.rmtree(output_dir / CHECKPOINTS_DIR, ignore_errors=True)
    state.wait_for_everyone()
    return SFTResult(str(model_dir), metrics, history, previews)


def make_trainer(config: SFTConfig, train_rows: Sequence[dict], validation_rows: Sequence[dict]):
    """The SFTTrainer that train_sft runs: base model and tokenizer, both datasets, settings, LoRA adapters."""
    import trl
    from transformers import PrinterCallback

    if not train_rows or not validation_rows:
        raise ValueError("Fine-tuning needs training and validation demonstrations; one of them is empty.")
    stay_offline()
    _quiet_progress_bars()
    model, tokenizer = load_base(config.base, config.base_gguf_file)
    trainer = trl.SFTTrainer(
        model=model,
        args=_trainer_args(config, Path(config.output_dir) / CHECKPOINTS_DIR),
        train_dataset=sft_dataset(train_rows, tokenizer),
        eval_dataset=sft_dataset(validation_rows, tokenizer),
        processing_class=tokenizer,
        peft_config=_lora_config(config),
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log; on_progress reports them instead
    return trainer


def load_base(base: str, gguf_file: str | None = None):
    """(model, tokenizer) of the base model, from files on disk; BaseModelError says what is wrong with them."""
    from .sampling import load_generator
    from .train import BaseModelError

    path = Path(base).expanduser()
    if not path.is_dir():
        raise BaseModelError(f"Base model directory {base!r} does not exist.")
    if gguf_file is not None and not (path / gguf_file).is_file():
        raise BaseModelError(f"Base model directory {base!r} has no GGUF file {gguf_file!r}.")
    if gguf_file is None and not (path / "config.json").is_file():
        raise BaseModelError(f"Base model directory {base!r} has no config.json; it is not a saved model.")
    try:
        model, tokenizer = load_generator(str(path), gguf_file)
    except (OSError, ValueError) as error:
        raise BaseModelError(f"Cannot load base model {base!r}: {error}") from error
    if gguf_file is not None:
        # The GGUF weights were unpacked into plain float32 layers, but the model is still marked as
        # quantized, which the Trainer refuses to train.
        model.hf_quantizer.remove_quantization_config(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-style tokenizers have none; padded positions are masked
    return model, tokenizer


def sft_dataset(rows: Sequence[dict], tokenizer):
    """The rows in TRL's prompt/completion format: conversational with a chat template, else plain text.

    Only those two columns go in: beside `messages`, TRL's format check would depend on the string hash
    seed (tests/labeling/test_trl.py).
    """
    from datasets import Dataset

    if tokenizer.chat_template:
        records = [
            {
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "completion": [{"role": "assistant", "content": row["completion"]}],
            }
            for row in rows
        ]
    else:
        records = [{"prompt": row["prompt"], "completion": _spaced(row["prompt"], row["completion"])} for row in rows]
    return Dataset.from_list(records)


def _spaced(prompt: str, completion: str) -> str:
    # TRL joins prompt and completion as they are: without a space the prompt's last word and the
    # answer's first would run together into other tokens than the model sees when it answers.
    if prompt[-1:].isspace() or completion[:1].isspace():
        return completion
    return " " + completion


def trainer_precision(device) -> dict[str, bool]:
    """The Trainer's bf16/fp16 flags for `device`: bf16 on GPUs that support it, fp16 on older ones, else float32.

    Both are always given: left unset, TRL turns bf16 on, even on a CPU.
    """
    import torch

    from .device import choose_precision

    dtype = choose_precision(device)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def _trainer_args(config: SFTConfig, checkpoints: Path):
    import trl

    from .device import pick_device

    device = pick_device(config.device)
    return trl.SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        seed=config.seed,
        max_length=config.max_length,
        completion_only_loss=True,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if config.eval_steps > 0 else "no",
        eval_steps=config.eval_steps if config.eval_steps > 0 else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,  # the newest checkpoint, and the one before in case a kill cut the newest short
        use_cpu=device.type == "cpu",  # under a launcher, CPU processes then talk over gloo (accelerate's choice)
        # The models fine-tuned here are small: recomputing activations would cost time and save little memory.
        activation_checkpointing=False,
        ddp_find_unused_parameters=False,  # every trained parameter gets a gradient: no extra pass to look for others
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **trainer_precision(device),
    )


def _lora_config(config: SFTConfig):
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")


def _quiet_progress_bars() -> None:
    """No progress bars from loading, tokenizing and saving: a worker's log is no terminal."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


# --- checkpoints and resuming ------------------------------------------------------------------------


def _run_hash(config: SFTConfig, train_rows: Sequence[dict], processes: int) -> str:
    """What decides the weights: the config, the training demonstrations and the number of processes."""
    from .checkpoint import config_hash

    texts = json.dumps([[row["prompt"], row["completion"]] for row in train_rows], ensure_ascii=False)
    fields = config.weight_fields() | {"processes": processes}
    return config_hash(fields, hashlib.sha256(texts.encode()).hexdigest())


def _prepare_checkpoints(folder: Path, run_hash: str, state) -> str | None:
    """The newest complete checkpoint of this run, or None; the main process removes stale and cut-short ones."""
    if state.is_main_process:
        if _stored_hash(folder) != run_hash:
            # Another config's or data's checkpoints (or none): resuming them would mix two runs.
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / RUN_FILE).write_text(json.dumps({"hash": run_hash}) + "\n")
        for checkpoint in folder.glob("checkpoint-*"):
            if not _complete(checkpoint):
                shutil.rmtree(checkpoint)
    state.wait_for_everyone()
    checkpoints = [path for path in folder.glob("checkpoint-*") if _complete(path)]
    if not checkpoints:
        return None
    return str(max(checkpoints, key=lambda path: int(path.name.rsplit("-", 1)[1])))


def _stored_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / RUN_FILE).read_text())["hash"]
    except (OSError, ValueError, KeyError):
        return None


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json after everything else: without it, a kill cut the save short."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _progress_callback(on_progress: Callable[[int, int, dict], None] | None, should_stop: Callable[[], bool] | None):
    """A TrainerCallback that reports progress and polls should_stop after each optimizer step."""
    from accelerate.utils import broadcast_object_list
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        cancelled = False

        def on_step_end(self, args, state, control, **kwargs):
            # A logging step is reported by on_log, with its logs, right after this.
            if on_progress is not None and state.is_world_process_zero and not control.should_log:
                on_progress(state.global_step, state.max_steps, {})
            if should_stop is None:
                return
            # The main process asks; every process stops at the same step, or the others would wait forever.
            (stop,) = broadcast_object_list([state.is_world_process_zero and bool(should_stop())])
            if stop:
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = True  # the checkpoint the next attempt resumes from

        def on_log(self, args, state, control, logs=None, **kwargs):
            if on_progress is not None and state.is_world_process_zero:
                on_progress(state.global_step, state.max_steps, dict(logs or {}))

    return Progress()


# --- results -----------------------------------------------------------------------------------------


def _history(log_history: list[dict]) -> list[dict]:
    """The Trainer's log, one entry per logged step: step, epoch, loss, learning_rate, validation_loss (step 0:
    the base's validation loss alone)."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        if "loss" in entry:
            logged = {"loss": entry["loss"], "learning_rate": entry["learning_rate"]}
        elif "eval_loss" in entry:
            logged = {"validation_loss": entry["eval_loss"]}
        else:
            continue  # the end-of-training summary
        by_step.setdefault(entry["step"], {"step": entry["step"], "epoch": entry["epoch"]}).update(logged)
    return list(by_step.values())


def _preview_rows(rows: Sequence[dict], count: int) -> list[dict]:
    """The first demonstration of each of the first `count` prompts."""
    firsts: dict[int, dict] = {}
    for row in rows:
        if len(firsts) == count:
            break
        firsts.setdefault(_prompt_key(row), row)
    return list(firsts.values())


def _sample(model, tokenizer, rows: Sequence[dict], config: SFTConfig, device) -> list[str]:
    from .sampling import sample_answers

    if not rows:
        return []
    model.eval()  # no dropout while answering
    answers = sample_answers(
        model,
        tokenizer,
        [row["prompt"] for row in rows],
        1,
        temperature=config.preview_temperature,
        top_p=config.preview_top_p,
        max_new_tokens=config.preview_max_new_tokens,
        seed=config.seed,
        device=device,
    )
    return [per_prompt[0] for per_prompt in answers]


def _card(config: SFTConfig, metrics: dict, history: list[dict], previews: list[dict]) -> dict[str, Any]:
    """sft_card.json: how the model was made (base, settings, code, libraries) and how good it is."""
    import torch

    from .train import code_version, package_version

    return {
        "format": "annotate-sft-model/1",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": config.base,
        "base_gguf_file": config.base_gguf_file,
        "config": dataclasses.asdict(config),
        "metrics": metrics,
        "history": history,
        "previews": previews,
        "code_version": code_version(),
        "libraries": {
            "torch": torch.__version__,
            **{name: package_version(name) for name in ("transformers", "trl", "peft")},
        },
    }


# --- command line --------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune a causal LM on demonstrations (SFT export rows, JSONL).")
    parser.add_argument("--train", type=Path, required=True, help="training rows: JSONL with prompt and completion")
    parser.add_argument("--validation", type=Path, required=True, help="validation rows, the same format")
    parser.add_argument("--base", required=True, help="base model directory")
    parser.add_argument("--gguf-file", default=None, help="a GGUF file inside --base")
    parser.add_argument("--out", type=Path, required=True, help="output directory (checkpoints, model)")
    defaults = SFTConfig(base="", output_dir="")
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=defaults.gradient_accumulation_steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved model)")
    parser.add_argument("--lora-r", type=int, default=defaults.lora_r)
    parser.add_argument("--lora-alpha", type=int, default=defaults.lora_alpha)
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="> 0 overrides --epochs")
    parser.add_argument("--preview-prompts", type=int, default=defaults.preview_prompts)
    parser.add_argument("--preview-max-new-tokens", type=int, default=defaults.preview_max_new_tokens)
    parser.add_argument("--save-steps", type=int, default=defaults.save_steps)
    parser.add_argument("--logging-steps", type=int, default=defaults.logging_steps)
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights-hash-dir", type=Path, help="each process writes rank<N>.sha256 of its final weights")
    args = parser.parse_args(argv)
    config = SFTConfig(
        base=args.base,
        output_dir=str(args.out),
        base_gguf_file=args.gguf_file,
        epochs=args.epochs,
        learning_rate=args.lr,
        max_length=args.max_length,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        seed=args.seed,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        max_steps=args.max_steps,
        preview_prompts=args.preview_prompts,
        preview_max_new_tokens=args.preview_max_new_tokens,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
        device=args.device,
    )

    def report(step: int, total_steps: int, logs: dict) -> None:
        if logs:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            print(f"step {step}/{total_steps} {shown}", flush=True)

    result = train_sft(_read_jsonl(args.train), _read_jsonl(args.validation), config, on_progress=report)
    from accelerate import PartialState

    state = PartialState()
    if args.weights_hash_dir is not None:
        args.weights_hash_dir.mkdir(parents=True, exist_ok=True)
        hash_file = args.weights_hash_dir / f"rank{state.process_index}.sha256"
        hash_file.write_text(result.metrics["weights_sha256"] + "\n")
    if state.is_main_process:
        print(json.dumps({"model_dir": result.model_dir, **result.metrics, "previews": result.previews}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

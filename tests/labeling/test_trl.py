"""The exports train with TRL as they are: `pairs` with RewardTrainer, `sft` with SFTTrainer.

Each test exports through export_dataset, loads the file with `datasets` and hands it unchanged to a
TRL 1.16 trainer with a tiny random GPT-2 and a WordPiece tokenizer built on the spot (nothing is
downloaded). What TRL does with the export's columns (read in its source, pinned here):

- RewardTrainer joins `prompt` onto `chosen` and onto `rejected` (the explicit-prompt format), tokenizes
  them, and with remove_unused_columns (the default) keeps only chosen_ids, rejected_ids and `margin`:
  the margin is used in the loss, -logsigmoid(r_chosen - r_rejected - margin).
- SFTTrainer, given `prompt`/`completion` beside `messages`, trains on prompt + completion as plain text
  with the loss on the completion only; `messages` is not tokenized. Whether TRL appends EOS to the
  completion depends on the process's string hash seed (trl.data_utils.is_conversational pops an
  arbitrary key from a set: `messages` makes the row conversational, `prompt` does not), so the test
  accepts either. To train on `messages` through the chat template, drop `prompt` and `completion`
  first (the last test).
"""
import math

import pytest
import torch
from transformers import BertTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from labeling.assignment.services import lease_next_task, submit_demonstration, submit_ranking
from labeling.datasets.exports import export_dataset
from labeling.models import Queue, TaskKind
from rewardtrain.ml.backbones import tiny_vocabulary
from tests.conftest import make_queue, make_user

trl = pytest.importorskip("trl")

LOADER = {"jsonl": "json", "parquet": "parquet"}
# A chat template any tokenizer can render: role then content per message.
CHAT_TEMPLATE = (
    "{% for message in messages %}[CLS] {{ message['role'] }} : {{ message['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}[CLS] assistant :{% endif %}"
)


@pytest.fixture
def labeled(db) -> Queue:
    """6 prompts of 4 answers; ana and ben each rank every prompt (ben with a tie) and demonstrate it."""
    queue = make_queue("TRL", prompts=6, answers=4, task_kind=Queue.Kinds.BOTH, demonstration_overlap=2)
    for user in (make_user("ana", "labeler"), make_user("ben", "labeler")):
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            if assignment.task.kind == TaskKind.DEMONSTRATION:
                submit_demonstration(assignment_id=assignment.pk, labeler=user, text=f"answer by {user.username}")
                continue
            a, b, c, d = assignment.answer_order
            groups = [[a], [b], [c], [d]] if user.username == "ana" else [[a], [b, c], [d]]
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=groups, ratings={a: 7, d: 2})
    return queue



@pytest.fixture
def tokenizer() -> BertTokenizer:
    """A WordPiece tokenizer over a tiny vocabulary (any lowercase word spells out), with EOS and a chat template."""
    vocab = tiny_vocabulary(["prompt", "answer", "to", "by", "ana", "ben", "user", "assistant"])
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.eos_token = "[SEP]"  # TRL appends EOS to texts; BERT's vocabulary has no token of that name
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def gpt2_config(tokenizer: BertTokenizer, **fields) -> GPT2Config:
    torch.manual_seed(0)
    return GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=256, vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
        **fields,
    )  # fmt: skip


def train_args(config_class, tmp_path, max_steps: int, **fields):
    return config_class(
        output_dir=str(tmp_path / "trainer"), max_steps=max_steps, per_device_train_batch_size=4,
        learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        dataloader_num_workers=0, seed=0, **fields,
    )  # fmt: skip


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(parameter, before[name]) for name, parameter in model.named_parameters())


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_reward_trainer_trains_on_the_pairs_export_as_it_is(labeled, offline_load, tokenizer, tmp_path, fmt):
    path = tmp_path / "pairs" / f"pairs.{fmt}"
    result = export_dataset(dataset="pairs", queues=[labeled], fmt=fmt, path=path)
    # ana: C(4, 2) = 6 pairs per prompt; ben ties two answers: 5.
    assert result.rows == 6 * (6 + 5)
    dataset = offline_load(LOADER[fmt], data_files=str(path), split="train")
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)

    model = GPT2ForSequenceClassification(gpt2_config(tokenizer, num_labels=1))
    before = snapshot(model)
    trainer = trl.RewardTrainer(
        model=model, args=train_args(trl.RewardConfig, tmp_path, 3), train_dataset=dataset, processing_class=tokenizer
    )
    # The explicit prompt is joined onto both answers: the chosen sequence starts with the prompt's tokens.
    first = trainer.train_dataset[0]
    prompt_ids = tokenizer(dataset[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert first["chosen_ids"][1 : 1 + len(prompt_ids)] == prompt_ids
    # Of the export's columns only `margin` reaches the batch, and the loss uses it.
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "margin"}
    assert set(batch["margin"].tolist()) <= {1.0, 2.0, 3.0} and batch["margin"].dtype == torch.float32
    with torch.no_grad():  # a margin of 1 or more makes the same rewards cost more
        with_margin = trainer.compute_loss(model, dict(batch))
        without = trainer.compute_loss(model, {key: value for key, value in batch.items() if key != "margin"})
    assert with_margin > without

    trainer.train()
    assert trainer.state.global_step == 3
    assert len(losses(trainer)) == 3 and all(math.isfinite(loss) for loss in losses(trainer))
    assert changed(model, before)


def test_sft_trainer_trains_on_the_sft_export_as_it_is_using_prompt_and_completion(
    labeled, offline_load, tokenizer, tmp_path
):
    path = tmp_path / "sft" / "sft.jsonl"
    assert export_dataset(dataset="sft", queues=[labeled], fmt="jsonl", path=path).rows == 12
    dataset = offline_load("json", data_files=str(path), split="train")
    assert {"prompt", "completion", "messages"} <= set(dataset.column_names)

    model = GPT2LMHeadModel(gpt2_config(tokenizer))
    before = snapshot(model)
    trainer = trl.SFTTrainer(
        model=model, args=train_args(trl.SFTConfig, tmp_path, 2, max_length=128), train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    # prompt + completion as plain text (no chat template), the loss on the completion only.
    assert trainer.completion_only_loss
    example, row = trainer.train_dataset[0], dataset[0]
    plain = tokenizer(row["prompt"] + row["completion"])["input_ids"]
    assert example["input_ids"][: len(plain) - 1] == plain[:-1]  # TRL may append EOS to the completion
    assert tokenizer.convert_tokens_to_ids("user") not in example["input_ids"]  # the template was not rendered
    assert -100 in example["labels"] and set(example["labels"]) != {-100}

    trainer.train()
    assert trainer.state.global_step == 2 and all(math.isfinite(loss) for loss in losses(trainer))
    assert changed(model, before)


def test_sft_trainer_renders_messages_through_the_chat_template_once_prompt_and_completion_are_dropped(
    labeled, offline_load, tokenizer, tmp_path
):
    path = tmp_path / "sft" / "sft.parquet"
    export_dataset(dataset="sft", queues=[labeled], fmt="parquet", path=path)
    dataset = offline_load("parquet", data_files=str(path), split="train").remove_columns(["prompt", "completion"])

    model = GPT2LMHeadModel(gpt2_config(tokenizer))
    trainer = trl.SFTTrainer(
        model=model, args=train_args(trl.SFTConfig, tmp_path, 2, max_length=128), train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    rendered = tokenizer.apply_chat_template(dataset[0]["messages"], tokenize=True, return_dict=True)["input_ids"]
    assert trainer.train_dataset[0]["input_ids"] == rendered
    trainer.train()
    assert trainer.state.global_step == 2 and all(math.isfinite(loss) for loss in losses(trainer))

"""Grouping by prompt, batching, truncation, dynamic padding, and where the reward is read."""
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from rewardtrain.ml import train as train_module
from rewardtrain.ml.encoding import PairEncoder, ensure_padding, keep_lengths, model_rewards
from rewardtrain.ml.grouping import collate_groups, encode_groups, group_by_prompt, plan_batches

from .conftest import tiny_config


def pair_frame(rows):
    """rows: (prompt_id, labeler_id, chosen_id, rejected_id, margin, split)."""
    texts = {10: "ten", 11: "eleven", 12: "twelve", 20: "twenty", 21: "twenty one"}
    return pd.DataFrame(
        [
            {"prompt_id": p, "labeler_id": lab, "ranking_id": p * 10 + lab, "chosen_id": c, "rejected_id": r,
             "margin": m, "rating_diff": np.nan, "split": s, "prompt": f"prompt {p}", "chosen": texts[c],
             "rejected": texts[r]}
            for p, lab, c, r, m, s in rows
        ]
    )


FRAME_ROWS = [
    # prompt 1, labeler 1 ranked 12 > 10 > 11; labeler 2 ranked 10 > 12 (11 tied with 12).
    (1, 1, 12, 10, 1, "train"), (1, 1, 12, 11, 2, "train"), (1, 1, 10, 11, 1, "train"),
    (1, 2, 10, 12, 1, "train"), (1, 2, 10, 11, 1, "train"),
    (2, 1, 21, 20, 1, "validation"),
]


def test_group_by_prompt_collects_unique_answers_and_all_labelers_comparisons():
    frame = pair_frame(FRAME_ROWS).sample(frac=1, random_state=3)  # row order must not matter
    first, second = group_by_prompt(frame)
    assert (first.prompt_id, first.prompt, first.split) == (1, "prompt 1", "train")
    assert first.answer_ids == (10, 11, 12) and first.answers == ("ten", "eleven", "twelve")
    ids = first.answer_ids
    comparisons = sorted(
        (ids[c], ids[r], m) for c, r, m in zip(first.chosen, first.rejected, first.margins, strict=True)
    )
    assert comparisons == [(10, 11, 1), (10, 11, 1), (10, 12, 1), (12, 10, 1), (12, 11, 2)]
    assert (second.prompt_id, second.split, second.comparisons) == (2, "validation", 1)
    assert second.answers == ("twenty", "twenty one")


def test_group_by_prompt_accepts_categorical_text_columns():
    frame = pair_frame(FRAME_ROWS).astype({"prompt": "category", "chosen": "category", "rejected": "category",
                                           "split": "category", "margin": "int16"})
    assert [g.answers for g in group_by_prompt(frame)] == [("ten", "eleven", "twelve"), ("twenty", "twenty one")]


def test_a_prompt_in_two_splits_is_refused():
    with pytest.raises(ValueError, match="several splits"):
        group_by_prompt(pair_frame([(1, 1, 10, 11, 1, "train"), (1, 2, 10, 12, 1, "validation")]))
    with pytest.raises(ValueError, match="lacks columns"):
        group_by_prompt(pair_frame(FRAME_ROWS).drop(columns=["margin"]))


def test_batch_holds_each_answer_once_and_comparisons_point_at_its_rows(tiny_model_dir):
    encoder = PairEncoder(AutoTokenizer.from_pretrained(tiny_model_dir), 32)
    groups = group_by_prompt(pair_frame(FRAME_ROWS))
    batch = collate_groups(encoder, groups, encode_groups(encoder, groups), [1, 0])
    assert batch.sequences == 5  # 2 + 3 unique answers, not 2 x 6 pair sequences
    assert batch.comparisons_per_prompt.tolist() == [1, 5]
    row_answer = [20, 21, 10, 11, 12]  # group 1's answers, then group 0's
    pairs = [(row_answer[c], row_answer[r]) for c, r in batch.pair_index.tolist()]
    assert pairs[0] == (21, 20)
    assert sorted(pairs[1:]) == [(10, 11), (10, 11), (10, 12), (12, 10), (12, 11)]
    assert batch.margins.tolist() == [1, *groups[0].margins.tolist()]


def test_training_runs_one_forward_per_batch_over_unique_answers(tiny_model_dir, rule_frame, tmp_path, monkeypatch):
    rows_per_training_forward = []

    def counting(model, inputs):
        if model.training:
            rows_per_training_forward.append(inputs["input_ids"].shape[0])
        return model_rewards(model, inputs)

    monkeypatch.setattr(train_module, "model_rewards", counting)
    config = tiny_config(tiny_model_dir, epochs=1, prompts_per_batch=8)
    result = train_module.train_reward_model(config, rule_frame, tmp_path)
    groups = [g for g in group_by_prompt(rule_frame) if g.split == "train"]
    assert len(rows_per_training_forward) == result.metrics["steps"] == -(-len(groups) // 8)
    answers = sum(len(g.answers) for g in groups)
    assert sum(rows_per_training_forward) == answers == result.metrics["train_sequences_per_epoch"]
    assert sum(rows_per_training_forward) < sum(g.comparisons for g in groups)  # 3 labelers x 4 pairs per prompt


def test_plan_batches_covers_every_prompt_once_with_similar_lengths_together():
    lengths = np.random.default_rng(0).integers(5, 500, size=203)
    plan = plan_batches(lengths, 8, seed=1, epoch=0, bucket_batches=4)
    assert sorted(i for b in plan for i in b) == list(range(203))
    assert len(plan) == 26 and sum(len(b) < 8 for b in plan) <= 1
    assert plan == plan_batches(lengths, 8, seed=1, epoch=0, bucket_batches=4)
    assert plan != plan_batches(lengths, 8, seed=1, epoch=1, bucket_batches=4)
    spread = np.mean([np.ptp(lengths[b]) for b in plan])
    random_spread = np.mean([np.ptp(lengths[b]) for b in np.array_split(np.random.permutation(203), 26)])
    assert spread < random_spread / 2


@pytest.mark.parametrize(
    ("prompt_len", "answer_len", "budget", "expected"),
    [
        (10, 5, 20, (10, 5)),  # fits
        (100, 5, 20, (15, 5)),  # a long prompt gives way to a short answer
        (3, 100, 20, (3, 17)),  # a long answer takes what a short prompt leaves
        (100, 100, 20, (10, 10)),  # both long: half each
        (100, 100, 21, (11, 10)),
    ],
)
def test_keep_lengths(prompt_len, answer_len, budget, expected):
    assert keep_lengths(prompt_len, answer_len, budget) == expected


def test_truncation_keeps_the_end_of_the_prompt_and_the_start_of_the_answer(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = PairEncoder(tokenizer, max_length=11)  # 8 tokens after [CLS] [SEP] [SEP]
    prompt = "a b c d e f g h i j"
    (seq,) = encoder.encode(prompt, ["1 2 3 4 5 6 7 8 9"])
    assert tokenizer.convert_ids_to_tokens(seq.input_ids.tolist()) == [
        "[CLS]", "g", "h", "i", "j", "[SEP]", "1", "2", "3", "4", "[SEP]"]
    assert seq.token_type_ids.tolist() == [0] * 6 + [1] * 5
    (short,) = encoder.encode("x y", ["1 2 3 4 5 6 7 8 9"])  # a short prompt leaves the answer more room
    assert tokenizer.convert_ids_to_tokens(short.input_ids.tolist()) == [
        "[CLS]", "x", "y", "[SEP]", "1", "2", "3", "4", "5", "6", "[SEP]"]
    (untouched,) = encoder.encode("x", ["1"])
    assert tokenizer.convert_ids_to_tokens(untouched.input_ids.tolist()) == ["[CLS]", "x", "[SEP]", "1", "[SEP]"]


def test_collate_pads_to_the_longest_sequence_of_the_batch_only(tiny_model_dir):
    encoder = PairEncoder(AutoTokenizer.from_pretrained(tiny_model_dir), max_length=64)
    batch = encoder.collate(encoder.encode("apple", ["a", "a b c d e"]))
    assert batch["input_ids"].shape == (2, 9)  # [CLS] apple [SEP] a b c d e [SEP], not 64
    assert batch["attention_mask"].tolist() == [[1] * 5 + [0] * 4, [1] * 9]
    assert batch["input_ids"][0, 5:].tolist() == [encoder.pad_id] * 4


def padded_equals_alone(model, encoder, answers, keys):
    model.eval()
    sequences = encoder.encode("the prompt", answers)
    with torch.no_grad():
        padded = model_rewards(model, {k: v for k, v in encoder.collate(sequences).items() if k in keys})
        alone = [model_rewards(model, {k: v for k, v in encoder.collate([s]).items() if k in keys}) for s in sequences]
    return torch.allclose(padded, torch.cat(alone), atol=1e-5)


ANSWERS = ["a", "a b c d e f g h", "the cat", "z y x w v u t s r q p"]


def test_bert_reward_is_the_same_padded_or_alone(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    keys = {"input_ids", "attention_mask", "token_type_ids"}
    assert padded_equals_alone(model, PairEncoder(tokenizer, 64), ANSWERS, keys)


def test_decoder_reward_is_read_at_the_last_real_token(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = None  # like GPT-2, which has no pad token
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=1,
                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    )
    ensure_padding(tokenizer, model)
    assert tokenizer.pad_token is not None and model.config.pad_token_id == tokenizer.pad_token_id
    assert padded_equals_alone(model, PairEncoder(tokenizer, 64), ANSWERS, {"input_ids", "attention_mask"})

"""Policy optimisation and evaluation on a tiny causal LM made on the spot (nothing is downloaded).

The model is a random one-layer GPT-2 over a word-level vocabulary of a dozen words with a chat template,
so that any word is a likely sample: a reward that counts the word "good" in an answer is learnable in
a few RL steps, and DPO pairs whose chosen answers say "good" teach it too.
"""
import socket
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rewardtrain.ml import policy_opt
from rewardtrain.ml.model_sources import ModelFiles
from rewardtrain.ml.policy_eval import evaluate_policy, reward_function, sequence_logprobs
from rewardtrain.ml.policy_opt import best_of_n, load_policy, precision_args, train_dpo, train_rl
from rewardtrain.ml.sampling import SampledTokens, prompt_inputs, sample_tokens
from rewardtrain.ml.train import TrainingCancelled

CPU = torch.device("cpu")
WORDS = ["good", "bad", "cat", "dog", "sun", "sky", "red", "blue", "one", "two", "big", "small"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
CHAT_TEMPLATE = (
    "{% for message in messages %}[CLS] {{ message['role'] }} : {{ message['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}[CLS] assistant :{% endif %}"
)
SAMPLING = dict(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0, device=CPU)
TRAIN_PROMPTS = [f"{a} {b}" for a in WORDS[2:8] for b in WORDS[8:]][:16]
HELD_OUT_PROMPTS = ["sky one big", "red dog", "cat", "blue sun two", "small small", "dog red one", "two", "sun"]


def count_good(prompts: list[str], completions: list[str]) -> list[float]:
    return [float(text.split().count("good")) for text in completions]


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A random one-layer GPT-2 and a word-level tokenizer with a chat template, saved like any checkpoint."""
    vocab = {token: i for i, token in enumerate(SPECIAL + ["user", "assistant", ":"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="[CLS]", eos_token="[SEP]"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=128, vocab_size=len(vocab),
        bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"],
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("policy") / "tiny-lm"
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Training reaches for nothing online: any attempt to connect fails the test."""

    def refuse(*args, **kwargs):
        pytest.fail(f"tried to reach the network: {args[-1] if args else kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def rl(tiny_lm, output_dir, **overrides):
    settings = dict(
        beta=0.02, num_generations=4, prompts_per_step=4, learning_rate=1e-2, max_steps=12,
        max_completion_length=8, seed=0, save_steps=100, device="cpu",
    )  # fmt: skip
    return train_rl(tiny_lm, None, TRAIN_PROMPTS, count_good, output_dir, **(settings | overrides))


# Precision and loading ------------------------------------------------------------------------------------------


def test_the_cpu_trains_in_float32_and_a_gpu_in_bf16_where_it_can(monkeypatch):
    assert precision_args(CPU) == {"bf16": False, "fp16": False, "use_cpu": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision_args(torch.device("cuda")) == {"bf16": True, "fp16": False, "use_cpu": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision_args(torch.device("cuda")) == {"bf16": False, "fp16": True, "use_cpu": False}


@pytest.mark.parametrize("train", ["rl", "dpo"])
def test_a_missing_policy_fails_with_a_message_naming_its_path(tmp_path, train):
    missing = tmp_path / "no-such-policy"
    with pytest.raises(FileNotFoundError, match=f"No policy model in {missing}: config.json is missing"):
        if train == "rl":
            train_rl(missing, None, ["a"], count_good, tmp_path / "out")
        else:
            train_dpo(missing, [{"prompt": "a", "chosen": "b", "rejected": "c"}], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"No reference model in .*: model\.gguf is missing"):
        load_policy(ModelFiles(str(tmp_path), "model.gguf"), role="reference")


def test_long_prompts_keep_their_last_tokens(tiny_lm):
    _, tokenizer = load_policy(tiny_lm)
    assert policy_opt._keep_last_tokens(tokenizer, "cat  dog sun sky", 2) == "sun sky"
    assert policy_opt._keep_last_tokens(tokenizer, "cat dog", 2) == "cat dog"


# Evaluation ----------------------------------------------------------------------------------------------------


def test_log_probs_are_of_exactly_the_sampled_tokens_whatever_the_padding(tiny_lm):
    model, tokenizer = load_policy(tiny_lm)
    prompts = ["cat", "sky one big red dog two"]  # very different lengths: the first is left-padded
    batch = sample_tokens(model.eval(), tokenizer, prompts, 3, **SAMPLING)
    batched = sequence_logprobs(model, batch)
    ended_early = batch.completion_mask.sum(dim=1) < batch.completion_ids.shape[1]
    assert ended_early.any() and not ended_early.all()
    # By hand, one answer at a time and without padding: each real token's log-prob given all before it.
    for row in range(len(batch.completion_ids)):
        prompt = batch.prompt_ids[row][batch.prompt_mask[row].bool()]
        answer = batch.completion_ids[row][batch.completion_mask[row].bool()]
        if ended_early[row]:  # the answer's last real token is the end of sequence; the rest is padding
            assert answer[-1] == tokenizer.eos_token_id
        total = 0.0
        for t in range(len(answer)):
            with torch.no_grad():
                logits = model(input_ids=torch.cat([prompt, answer[:t]])[None]).logits[0, -1]
            total += torch.log_softmax(logits, dim=-1)[answer[t]].item()
        assert batched[row].item() == pytest.approx(total, abs=1e-4)


def test_a_model_has_no_kl_to_itself_a_perturbed_one_has_and_wins_half_against_itself(tiny_lm):
    model, tokenizer = load_policy(tiny_lm)
    same = evaluate_policy(model, model, model, tokenizer, HELD_OUT_PROMPTS, count_good, samples_per_prompt=4,
                           **SAMPLING)  # fmt: skip
    assert same["kl_to_reference"] == pytest.approx(0.0, abs=1e-6)
    assert same["predicted_win_rate"] == 0.5 and same["mean_reward"] == same["parent_mean_reward"]
    assert (same["prompts"], same["samples_per_prompt"]) == (8, 4)

    perturbed, _ = load_policy(tiny_lm)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in perturbed.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    drifted = evaluate_policy(perturbed, model, model, tokenizer, HELD_OUT_PROMPTS, count_good, samples_per_prompt=4,
                              **SAMPLING)  # fmt: skip
    assert drifted["kl_to_reference"] > 0.1


class FakeScorer:
    """Scores an answer by its length; records the calls (one per prompt is the point)."""

    def __init__(self):
        self.calls = []

    def score(self, prompt, answers):
        self.calls.append((prompt, list(answers)))
        return [float(len(answer)) for answer in answers]


def test_a_scorer_becomes_a_reward_function_for_plain_texts_and_for_trl_conversations():
    scorer = FakeScorer()
    reward = reward_function(scorer)
    assert reward(["p", "q", "p"], ["a", "bb", "ccc"]) == [1.0, 2.0, 3.0]
    assert scorer.calls == [("p", ["a", "ccc"]), ("q", ["bb"])]
    conversation = [{"role": "user", "content": "p"}]
    answers = [[{"role": "assistant", "content": "dddd"}], [{"role": "assistant", "content": "e"}]]
    assert reward(prompts=[conversation, conversation], completions=answers, completion_ids=[[1], [2]]) == [4.0, 1.0]
    assert scorer.calls[-1] == ("p", ["dddd", "e"])


def test_best_of_n_picks_the_best_sample_and_repeats_for_a_seed(tiny_lm):
    model, tokenizer = load_policy(tiny_lm)
    result = best_of_n(model, tokenizer, HELD_OUT_PROMPTS, count_good, 6, **SAMPLING)
    assert [len(p.samples) for p in result.per_prompt] == [6] * len(HELD_OUT_PROMPTS)
    for prompt in result.per_prompt:
        assert prompt.best_reward == max(prompt.rewards) and prompt.best == prompt.samples[prompt.best_index]
    assert result.mean_best_reward >= result.mean_sample_reward
    assert result.mean_best_reward > result.mean_sample_reward  # 6 random samples: some say "good" more
    assert best_of_n(model, tokenizer, HELD_OUT_PROMPTS, count_good, 6, **SAMPLING) == result
    assert best_of_n(model, tokenizer, HELD_OUT_PROMPTS, count_good, 6, **(SAMPLING | {"seed": 1})) != result


# Training ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_rl_raises_the_reward_on_held_out_prompts_and_logs_reward_kl_and_loss(tiny_lm, tmp_path, algorithm, no_network):
    started = time.monotonic()
    progress = []
    result = rl(tiny_lm, tmp_path / "run", algorithm=algorithm, on_progress=lambda *args: progress.append(args))
    seconds = time.monotonic() - started

    assert result.steps == 12 and result.resumed_from_step is None
    assert [entry["step"] for entry in result.history] == list(range(1, 13))
    assert all({"loss", "reward", "kl", "completion_length"} <= set(entry) for entry in result.history)
    assert max(entry["kl"] for entry in result.history) > 0
    assert [(step, total) for step, total, _ in progress] == [(step, 12) for step in range(1, 13)]
    assert progress[-1][2] == result.history[-1]
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # the model is saved, the checkpoints are gone

    start, tokenizer = load_policy(tiny_lm)
    trained, _ = load_policy(result.model_dir)
    figures = evaluate_policy(trained, start, start, tokenizer, HELD_OUT_PROMPTS, count_good, samples_per_prompt=8,
                              **SAMPLING)  # fmt: skip
    print(f"{algorithm}: {seconds:.1f}s, train reward {result.history[0]['reward']:.2f} -> "
          f"{result.history[-1]['reward']:.2f}, held out {figures}")  # fmt: skip
    assert figures["mean_reward"] > figures["parent_mean_reward"] + 0.5
    assert figures["kl_to_reference"] > 0
    assert figures["predicted_win_rate"] > 0.6


def test_cancel_keeps_a_checkpoint_and_a_new_call_resumes_from_it(tiny_lm, tmp_path):
    steps_seen = []

    def note(step, total, entry):
        steps_seen.append(step)

    # Asked to stop once step 3 is reported, training ends after the step under way, the 4th.
    with pytest.raises(TrainingCancelled, match="cancelled at step 4 of 6"):
        rl(tiny_lm, tmp_path / "run", max_steps=6, on_progress=note, should_stop=lambda: len(steps_seen) >= 3)
    assert [p.name for p in (tmp_path / "run").glob("checkpoint-*")] == ["checkpoint-4"]
    assert not (tmp_path / "run" / "model").exists()

    result = rl(tiny_lm, tmp_path / "run", max_steps=6, on_progress=note)
    assert result.resumed_from_step == 4 and result.steps == 6
    assert steps_seen == [1, 2, 3, 4, 5, 6]  # the second call went on at step 5
    assert [entry["step"] for entry in result.history] == [1, 2, 3, 4, 5, 6]  # the first call's steps are kept
    assert (result.model_dir / "config.json").is_file()


def test_the_reference_is_the_starting_policy_unless_another_is_given(tiny_lm, tmp_path):
    other = tmp_path / "other"
    model, tokenizer = load_policy(tiny_lm)
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)  # tied to the input embeddings: a sharper, different model
    model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    # RLOO's first step samples from the untrained policy: its KL to itself is 0, to another model not.
    alone = rl(tiny_lm, tmp_path / "alone", max_steps=1)
    against_other = train_rl(tiny_lm, other, TRAIN_PROMPTS, count_good, tmp_path / "against", beta=0.02,
                             prompts_per_step=4, max_steps=1, max_completion_length=8, device="cpu")  # fmt: skip
    assert alone.history[0]["kl"] == 0.0
    assert abs(against_other.history[0]["kl"]) > 0.01
    assert "kl" not in rl(tiny_lm, tmp_path / "no-kl", max_steps=1, beta=0.0).history[0]  # no KL term, no reference


def chosen_says_good(prompt: str, i: int) -> dict[str, str]:
    other = WORDS[2 + i % 10]
    return {"prompt": prompt, "chosen": f"good {other} good", "rejected": f"bad {other} bad"}


def margins(model, tokenizer, pairs) -> torch.Tensor:
    """log p(chosen | prompt) - log p(rejected | prompt) of each pair, prompt in the chat format."""

    def logprobs(answers):
        prompts = prompt_inputs(tokenizer, [pair["prompt"] for pair in pairs])
        answer_ids = tokenizer(answers, add_special_tokens=False, padding=True, return_tensors="pt")
        return sequence_logprobs(model, SampledTokens(prompts["input_ids"], prompts["attention_mask"],
                                                      answer_ids["input_ids"], answer_ids["attention_mask"]))

    return logprobs([pair["chosen"] for pair in pairs]) - logprobs([pair["rejected"] for pair in pairs])


def test_dpo_makes_the_chosen_answers_likelier_than_the_rejected_on_held_out_prompts(tiny_lm, tmp_path, no_network):
    train_pairs = [chosen_says_good(prompt, i) for i, prompt in enumerate(TRAIN_PROMPTS)]
    held_out_pairs = [chosen_says_good(prompt, i + 3) for i, prompt in enumerate(HELD_OUT_PROMPTS)]
    started = time.monotonic()
    result = train_dpo(tiny_lm, train_pairs, tmp_path / "dpo", beta=0.1, pairs_per_step=8, learning_rate=3e-3,
                       max_steps=10, max_length=64, save_steps=100, device="cpu")  # fmt: skip
    seconds = time.monotonic() - started
    assert result.steps == 10 and len(result.history) == 10
    assert all({"loss", "reward_margin", "reward_accuracy"} <= set(entry) for entry in result.history)

    start, tokenizer = load_policy(tiny_lm)
    trained, _ = load_policy(result.model_dir)
    before, after = margins(start, tokenizer, held_out_pairs), margins(trained, tokenizer, held_out_pairs)
    print(f"dpo: {seconds:.1f}s, loss {result.history[0]['loss']:.3f} -> {result.history[-1]['loss']:.3f}, "
          f"held-out margin {before.mean():.2f} -> {after.mean():.2f}")  # fmt: skip
    assert after.mean() > before.mean() + 1.0
    assert (after > 0).all()

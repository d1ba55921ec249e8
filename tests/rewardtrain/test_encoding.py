"""PairEncoder: truncation of token ids, linear in the texts' length, equal to the tokenizer's own pair template."""
import copy
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rewardtrain.ml.encoding import PairEncoder, keep_lengths

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "answers and prompts", "hello world 123 !?"] * 20


def byte_level_tokenizer(processor) -> PreTrainedTokenizerFast:
    """A small byte-level BPE (GPT-2 / RoBERTa style) trained on the spot: no download."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<s>", "</s>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    backend.post_processor = processor
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module", params=["bert", "gpt2", "roberta"])
def tokenizer(request, tiny_model_dir):
    if request.param == "bert":
        return AutoTokenizer.from_pretrained(tiny_model_dir)
    if request.param == "gpt2":
        return byte_level_tokenizer(processors.ByteLevel(trim_offsets=False))
    return byte_level_tokenizer(processors.RobertaProcessing(("</s>", 1), ("<s>", 0)))


def reference(encoder: PairEncoder, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """What the Rust tokenizer itself makes of the pair, truncated the same way (fine on short texts only)."""
    prompt_encoding, answer_encoding = encoder.backend.encode_batch([prompt, answer], add_special_tokens=False)
    prompt_keep, answer_keep = keep_lengths(len(prompt_encoding.ids), len(answer_encoding.ids), encoder.budget)
    prompt_encoding, answer_encoding = copy.deepcopy(prompt_encoding), copy.deepcopy(answer_encoding)
    prompt_encoding.truncate(prompt_keep, direction="left")
    answer_encoding.truncate(answer_keep, direction="right")
    joined = encoder.backend.post_process(prompt_encoding, answer_encoding, add_special_tokens=True)
    return joined.ids, joined.type_ids


TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz 0123!?", max_size=80)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(prompt=TEXT, answer=TEXT, max_length=st.integers(6, 40))
def test_sequences_equal_the_tokenizers_own_pair_template(tokenizer, prompt, answer, max_length):
    encoder = PairEncoder(tokenizer, max_length)
    (sequence,) = encoder.encode(prompt, [answer])
    ids, type_ids = reference(encoder, prompt, answer)
    assert sequence.input_ids.tolist() == ids
    assert sequence.token_type_ids.tolist() == type_ids
    assert len(sequence) <= max_length


class RecordingBackend:
    """Forwards to the Rust tokenizer and keeps every Encoding it hands out."""

    def __init__(self, backend: Tokenizer):
        self.backend = backend
        self.encodings = []
        self.post_processed = 0

    def __getattr__(self, name):
        method = getattr(self.backend, name)

        def recorded(*args, **kwargs):
            result = method(*args, **kwargs)
            self.post_processed += name == "post_process"
            self.encodings += result if isinstance(result, list) else [result]
            return result

        return recorded


def test_long_texts_are_cut_as_token_ids_with_no_overflowing_pieces(tokenizer):
    """Encoding.truncate() kept the cut tokens as overflowing pieces, and post_process paired every piece of the
    prompt with every piece of the answer: quadratic in the texts' length (bench/encoding.py measures it)."""
    encoder = PairEncoder(tokenizer, 64)
    encoder.backend = RecordingBackend(encoder.backend)
    rng = random.Random(0)
    prompt, answer = ("".join(rng.choice("abcdefgh !?") for _ in range(20_000)) for _ in range(2))
    sequences = encoder.encode(prompt, [answer, answer[:50]])
    assert [len(s) for s in sequences][0] == 64
    assert encoder.backend.post_processed == 0
    assert all(len(encoding.overflowing) == 0 for encoding in encoder.backend.encodings)
    # The prompt keeps its end and the answer its start.
    prompt_ids, answer_ids = encoder.tokenize([prompt, answer])
    prompt_keep, answer_keep = keep_lengths(len(prompt_ids), len(answer_ids), encoder.budget)
    template = encoder.template
    expected = [template.prefix[0], prompt_ids[-prompt_keep:], template.middle[0], answer_ids[:answer_keep]]
    assert sequences[0].input_ids.tolist() == np.concatenate([*expected, template.suffix[0]]).tolist()

def test_a_post_processor_that_is_not_a_fixed_template_is_refused(tiny_model_dir):
    tokenizer = byte_level_tokenizer(
        processors.TemplateProcessing(single="$A", pair="$A <s> $B $A", special_tokens=[("<s>", 0)])
    )
    with pytest.raises(ValueError, match="fixed way"):
        PairEncoder(tokenizer, 32)

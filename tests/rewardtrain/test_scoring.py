"""Scoring a prompt's answers with a trained model: one forward pass, cached loading, training's conventions."""
import shutil

import pytest

from rewardtrain.ml import scoring
from rewardtrain.ml.encoding import model_rewards
from rewardtrain.ml.synthetic import MARKER


@pytest.fixture(autouse=True)
def fresh_cache():
    scoring.clear_scorers()
    yield
    scoring.clear_scorers()


def test_better_answers_score_higher_in_one_forward_pass(trained, monkeypatch):
    forwards = []

    def counting(model, inputs):
        forwards.append(inputs["input_ids"].shape[0])
        return model_rewards(model, inputs)

    monkeypatch.setattr(scoring, "model_rewards", counting)
    scorer = scoring.load_scorer(trained.model_dir)
    answers = ["the cat and the dog", f"the {MARKER} cat and the dog", "blue river", f"{MARKER} blue river"]
    rewards = scorer.score("question 1: describe the cat", answers)
    assert forwards == [4]
    assert len(rewards) == 4 and all(isinstance(r, float) for r in rewards)
    assert rewards[1] > rewards[0] and rewards[3] > rewards[2]
    assert scorer.score("question 1: describe the cat", []) == []


def test_scores_do_not_depend_on_the_other_answers(trained):
    scorer = scoring.load_scorer(trained.model_dir)
    together = scorer.score("describe the moon", ["a", "the moon is a stone in the sky light water field"])
    alone = scorer.score("describe the moon", ["a"])
    assert together[0] == pytest.approx(alone[0], abs=1e-5)


def test_scorers_are_cached_per_model_dir_two_at_most(trained, tmp_path):
    copies = []
    for name in ("a", "b"):
        shutil.copytree(trained.model_dir, tmp_path / name)
        copies.append(tmp_path / name)
    first = scoring.load_scorer(trained.model_dir)
    assert scoring.load_scorer(str(trained.model_dir)) is first
    scoring.load_scorer(copies[0])
    scoring.load_scorer(copies[1])  # the third one pushes out the least recently used
    assert scoring.load_scorer(copies[1]) is scoring.load_scorer(copies[1])
    assert scoring.load_scorer(trained.model_dir) is not first


def test_offset_is_subtracted_when_the_head_has_no_bias(trained, tmp_path):
    import json

    model_dir = tmp_path / "no-bias"
    shutil.copytree(trained.model_dir, model_dir)
    card_path = model_dir / "reward_model_card.json"
    card = json.loads(card_path.read_text())
    reference = scoring.Scorer(model_dir).score("p", ["a", "b"])
    card.update(bias_applied=False, bias_offset=2.5)
    card_path.write_text(json.dumps(card))
    shifted = scoring.Scorer(model_dir).score("p", ["a", "b"])
    assert shifted == pytest.approx([r - 2.5 for r in reference])


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No reward model"):
        scoring.load_scorer(tmp_path)

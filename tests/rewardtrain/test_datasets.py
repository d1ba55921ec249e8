"""Building pair datasets from rankings in the database (the worker's job, run here in-process)."""
import pytest
from django.conf import settings as django_settings

from core.jobs import JobStatus
from labeling.assignment.services import lease_next_task, skip_task
from labeling.datasets.filters import clean_filters
from labeling.models import Answer, Assignment, Prompt, Task
from rewardtrain import datasets
from rewardtrain.forms import PairDatasetForm
from rewardtrain.ml import pairs
from rewardtrain.models import PairDataset

from .factories import MARKER, marker_queue, rank_by_marker


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path


def build(name="marker", queues=(), **fields) -> PairDataset:
    dataset = PairDataset.objects.create(name=name, version=fields.pop("version", 1), **fields)
    dataset.queues.set(queues)
    return datasets.build_pair_dataset(dataset)


def test_a_dataset_holds_every_pair_of_every_ranking_split_by_prompt(db):
    queue = marker_queue(prompts=10, answers=4)
    rank_by_marker(queue, labelers=2)
    dataset = build(queues=[queue], validation_fraction=0.3, seed=1)
    assert dataset.status == JobStatus.SUCCEEDED
    # Each ranking: 2 marked answers tied, then 2 unmarked tied -> 2 * 2 = 4 pairs.
    assert (dataset.rankings, dataset.prompts, dataset.rows) == (20, 10, 80)
    frame = pairs.read_pair_dataset(django_settings.ARTIFACTS_DIR / dataset.file)
    assert len(frame) == dataset.rows == dataset.train_rows + dataset.validation_rows
    assert list(frame.columns) == [
        "prompt_id", "labeler_id", "ranking_id", "chosen_id", "rejected_id", "margin", "rating_diff", "split",
        "prompt", "chosen", "rejected",
    ]  # fmt: skip
    sides = frame.groupby("prompt_id")["split"].nunique()
    assert (sides == 1).all(), "a prompt on both sides of the split"
    assert set(frame["split"]) == {"train", "validation"}
    marked_wins = frame["chosen"].str.contains(MARKER) & ~frame["rejected"].str.contains(MARKER)
    assert marked_wins.all() and (frame["margin"] == 1).all()
    texts = dict(Answer.objects.values_list("pk", "text"))
    assert (frame["chosen"] == frame["chosen_id"].map(texts)).all()


def test_rebuilding_with_the_same_inputs_gives_the_same_checksum(db):
    queue = marker_queue(prompts=6)
    rank_by_marker(queue, labelers=2)
    first = build(queues=[queue], seed=3)
    second = build(queues=[queue], seed=3, version=2)
    other_seed = build(queues=[queue], seed=4, version=3)
    assert first.sha256 == second.sha256 and len(first.sha256) == 64
    assert first.file != second.file
    assert other_seed.sha256 != first.sha256  # a different split


def test_filters_leave_out_labelers_skipped_and_flagged_prompts(db):
    queue = marker_queue(prompts=6, answers=4)
    users = rank_by_marker(queue, labelers=2, flag_first=False)
    only_first = build(queues=[queue], filters={"labeler_ids": [users[0].pk]})
    assert only_first.rankings == 6

    skipped_queue = marker_queue("Skips", prompts=4)
    skipper = rank_by_marker(skipped_queue, labelers=1)[0]
    extra = marker_queue("Extra", prompts=2)
    assignment = lease_next_task(labeler=skipper, queue=extra)
    skip_task(assignment_id=assignment.pk, labeler=skipper, reason="harmful")
    rank_by_marker(extra, labelers=1, seed=5)
    everything = build(name="extra", queues=[extra])
    without_skipped = build(name="extra", queues=[extra], version=2, filters={"exclude_skipped": True})
    assert everything.prompts == 2 and without_skipped.prompts == 1

    flagged = marker_queue("Flags", prompts=3)
    rank_by_marker(flagged, labelers=1, flag_first=True)  # every ranking flags one answer
    assert build(name="flags", queues=[flagged]).prompts == 3
    with pytest.raises(ValueError, match="No submitted rankings"):
        build(name="flags", version=2, queues=[flagged], filters={"exclude_flagged": True})


def test_a_dataset_with_no_rankings_fails_with_a_reason(db):
    queue = marker_queue(prompts=2)
    dataset = PairDataset.objects.create(name="empty", version=1)
    dataset.queues.set([queue])
    with pytest.raises(ValueError, match="No submitted rankings"):
        datasets.build_pair_dataset(dataset)
    assert not Assignment.objects.filter(status="submitted").exists()


def test_versions_count_up_per_name(db):
    queue = marker_queue(prompts=2)
    first = datasets.request_pair_dataset(name="helpful", queues=[queue], filters={})
    second = datasets.request_pair_dataset(name="helpful", queues=[queue], filters={})
    other = datasets.request_pair_dataset(name="harmless", queues=[queue], filters={})
    assert (first.version, second.version, other.version) == (1, 2, 1)
    with pytest.raises(ValueError, match="Unknown filter"):
        datasets.request_pair_dataset(name="x", queues=[queue], filters={"labelerz": [1]})
    with pytest.raises(ValueError, match="at least one queue"):
        datasets.request_pair_dataset(name="x", queues=[], filters={})


def test_excluded_and_gold_prompts_never_reach_a_dataset(db):
    queue = marker_queue(prompts=6)
    rank_by_marker(queue, labelers=2)
    excluded, gold = Prompt.objects.filter(queue=queue).order_by("pk")[:2]
    Prompt.objects.filter(pk=excluded.pk).update(excluded=True)
    answers = list(gold.answers.values_list("pk", flat=True))
    Task.objects.filter(prompt=gold).update(gold_groups=[answers[:2], answers[2:]])
    for version, source in enumerate(["labelers", "consensus"], start=1):
        dataset = build(queues=[queue], version=version, filters=clean_filters({"source": source}))
        frame = pairs.read_pair_dataset(django_settings.ARTIFACTS_DIR / dataset.file)
        assert dataset.prompts == 4 and not set(frame["prompt_id"]) & {excluded.pk, gold.pk}


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, "date_to"),
        ({"labeler_ids": ["me"]}, "labeler_ids"),
        ({"source": "votes"}, "source"),
        ({"source": "consensus", "min_rankings": 0}, "min_rankings"),
        ({"source": "consensus", "min_rankings": "2.5"}, "min_rankings"),
        ({"min_rankings": 3}, "min_rankings"),  # only for a consensus
        ({"min_agreement": 1.5}, "min_agreement"),
        ({"min_agreement": "high"}, "min_agreement"),
        ({"min_agreement": float("nan")}, "min_agreement"),
        ({"min_gold_accuracy": -0.1}, "min_gold_accuracy"),
        ({"min_gold_accuracy": True}, "min_gold_accuracy"),
    ],
)
def test_bad_filter_values_are_refused_naming_the_filter(filters, field):
    with pytest.raises(ValueError, match=field):
        clean_filters(filters)


def test_filters_are_recorded_with_their_defaults():
    assert clean_filters({}) == {"exclude_skipped": False, "exclude_flagged": False, "source": "labelers"}
    cleaned = clean_filters({"source": "consensus", "min_agreement": "0.5", "min_gold_accuracy": 0})
    assert cleaned == {
        "exclude_skipped": False, "exclude_flagged": False, "source": "consensus", "min_rankings": 2,
        "min_agreement": 0.5, "min_gold_accuracy": 0.0,
    }  # fmt: skip


def test_the_form_names_a_bad_source_filter(db):
    queue = marker_queue(prompts=1)
    base = {"name": "x", "queues": [queue.pk], "validation_fraction": 0.1, "seed": 0}
    form = PairDatasetForm({**base, "min_agreement": "2", "min_gold_accuracy": "x", "min_rankings": "3"})
    assert not form.is_valid()
    assert set(form.errors) == {"min_agreement", "min_gold_accuracy", "min_rankings"}
    form = PairDatasetForm({**base, "source": "consensus", "min_agreement": "0.6"})
    assert form.is_valid(), form.errors
    assert clean_filters(form.filters())["min_rankings"] == 2

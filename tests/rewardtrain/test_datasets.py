"""Building pair datasets from rankings in the database (the worker's job, run here in-process)."""
import pytest
from django.conf import settings as django_settings

from labeling.assignment import lease_next_task, skip_task
from labeling.models import Answer, Assignment
from rewardtrain import datasets, pairs
from rewardtrain.models import JobStatus, PairDataset

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

"""Pair datasets from a consensus per prompt, and without labelers below an agreement or gold minimum."""
import random

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from labeling.assignment.services import lease_next_task, skip_task, submit_ranking, sync_tasks
from labeling.datasets.filters import clean_filters
from labeling.models import Answer, Prompt, Ranking, Task
from labeling.quality.agreement import consensus_ranking
from labeling.ranking import expand_ranking
from rewardtrain import datasets
from rewardtrain.ml import pairs
from rewardtrain.models import PairDataset
from tests.conftest import make_user

from .factories import MARKER, marker_queue


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path


def build(queues, version=1, **filters) -> PairDataset:
    dataset = PairDataset.objects.create(name="sources", version=version, filters=clean_filters(filters))
    dataset.queues.set(queues)
    return datasets.build_pair_dataset(dataset)


def read(dataset: PairDataset):
    return pairs.read_pair_dataset(django_settings.ARTIFACTS_DIR / dataset.file)


def with_overlap(queue, overlap: int):
    queue.ranking_overlap = overlap
    queue.save()
    sync_tasks(queue)
    return queue


def marker_groups(answer_ids, *, reverse_on=()):
    """Answers with MARKER first, the rest tied after them; the other way round on prompts in reverse_on."""
    texts = dict(Answer.objects.filter(pk__in=answer_ids).values_list("pk", "text"))
    marked = [pk for pk in answer_ids if MARKER in texts[pk]]
    groups = [marked, [pk for pk in answer_ids if pk not in marked]]
    return groups[::-1] if Answer.objects.get(pk=answer_ids[0]).prompt_id in reverse_on else groups


def rank_all(queue, user, choose) -> None:
    """The labeler takes every task of the queue; choose(assignment) gives tie groups, or None to skip."""
    while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
        groups = choose(assignment)
        if groups is None:
            skip_task(assignment_id=assignment.pk, labeler=user, reason="unclear")
        else:
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=groups)


def test_a_consensus_gives_one_ranking_per_prompt_ranked_by_enough_labelers(db):
    queue = with_overlap(marker_queue("Votes", prompts=6, answers=5), 3)
    lone = Prompt.objects.filter(queue=queue).order_by("pk").last()
    rng = random.Random(4)

    def random_groups(assignment, first=False):
        if assignment.task.prompt_id == lone.pk and not first:
            return None  # only the first labeler ranks this prompt
        ids = list(assignment.answer_order)
        rng.shuffle(ids)
        groups = [[ids[0]]]  # at least two tie groups, so every ranking gives pairs
        for answer_id in ids[1:]:
            if rng.random() < 0.3:
                groups[-1].append(answer_id)
            else:
                groups.append([answer_id])
        return groups

    users = [make_user(f"voter{i}", "labeler") for i in range(3)]
    rank_all(queue, users[0], lambda a: random_groups(a, first=True))
    for user in users[1:]:
        rank_all(queue, user, random_groups)

    dataset = build([queue], source="consensus")
    frame = read(dataset)
    assert (dataset.prompts, dataset.rankings) == (5, 5)
    assert dataset.build_notes == {"prompts_with_too_few_rankings": 1}
    assert (frame["labeler_id"] == datasets.CONSENSUS_LABELER).all()
    assert (frame["ranking_id"] == -frame["prompt_id"]).all() and frame["rating_diff"].isna().all()
    assert frame["labeler_id"].dtype == np.int64
    for prompt_id, rows in frame.groupby("prompt_id"):
        rankings = list(Ranking.objects.filter(assignment__task__prompt_id=prompt_id).values_list("groups", flat=True))
        assert len(rankings) == 3
        expected = {(p.chosen, p.rejected, p.margin) for p in expand_ranking(consensus_ranking(rankings))}
        assert set(zip(rows["chosen_id"], rows["rejected_id"], rows["margin"], strict=True)) == expected
        assert len(rows) == len(expected)

    everything = build([queue], version=2, source="consensus", min_rankings=1)
    assert everything.prompts == 6 and lone.pk in set(read(everything)["prompt_id"])
    with pytest.raises(ValueError, match="No prompt has the 4 rankings"):
        build([queue], version=3, source="consensus", min_rankings=4)


def test_min_agreement_leaves_out_a_labeler_who_reverses_the_others(db, client):
    queue = with_overlap(marker_queue("Agree", prompts=8), 3)
    agreeing = [make_user(f"agree{i}", "labeler") for i in range(2)]
    contrary = make_user("contrary", "labeler")
    for user in agreeing:
        rank_all(queue, user, lambda a: marker_groups(a.answer_order))
    prompt_ids = set(Prompt.objects.filter(queue=queue).values_list("pk", flat=True))
    rank_all(queue, contrary, lambda a: marker_groups(a.answer_order, reverse_on=prompt_ids))
    # Alone in its queue, this labeler has no agreement figure and is kept.
    alone_queue = marker_queue("Alone", prompts=2)
    alone = make_user("alone", "labeler")
    rank_all(alone_queue, alone, lambda a: marker_groups(a.answer_order))

    dataset = build([queue, alone_queue], min_agreement=0.4)
    frame = read(dataset)
    assert set(frame["labeler_id"]) == {user.pk for user in agreeing} | {alone.pk}
    assert dataset.build_notes == {
        "left_out_labelers": [{"queue_id": queue.pk, "labeler_id": contrary.pk, "filter": "min_agreement", "rate": 0.0}]
    }
    assert (frame["chosen"].str.contains(MARKER) & ~frame["rejected"].str.contains(MARKER)).all()

    # The labelers are left out before the consensus: two rankings per prompt remain, fewer than asked.
    assert build([queue], version=2, source="consensus", min_rankings=3).prompts == 8
    with pytest.raises(ValueError, match="No prompt has the 3 rankings"):
        build([queue], version=3, source="consensus", min_rankings=3, min_agreement=0.4)

    client.force_login(make_user("ml1", "ml"))
    page = client.get(reverse("ml-dataset", args=[dataset.pk])).content.decode()
    assert "contrary" in page and "min_agreement" in page


def test_min_gold_accuracy_leaves_out_a_labeler_below_it(db):
    queue = with_overlap(marker_queue("Gold", prompts=8), 4)
    gold_ids = set(Prompt.objects.filter(queue=queue).order_by("pk").values_list("pk", flat=True)[:3])
    careful = [make_user(f"careful{i}", "labeler") for i in range(2)]
    careless = make_user("careless", "labeler")
    newcomer = make_user("newcomer", "labeler")  # ranks no gold prompt: no gold figure, kept
    for user in careful:
        rank_all(queue, user, lambda a: marker_groups(a.answer_order))
    rank_all(queue, careless, lambda a: marker_groups(a.answer_order, reverse_on=gold_ids))
    rank_all(queue, newcomer, lambda a: None if a.task.prompt_id in gold_ids else marker_groups(a.answer_order))
    # The gold prompts get their reference ranking: the marker rule.
    for task in Task.objects.filter(prompt_id__in=gold_ids):
        task.gold_groups = marker_groups(list(task.prompt.answers.values_list("pk", flat=True)))
        task.save(update_fields=["gold_groups"])

    dataset = build([queue], min_gold_accuracy=0.5)
    frame = read(dataset)
    assert set(frame["labeler_id"]) == {user.pk for user in careful} | {newcomer.pk}
    assert not set(frame["prompt_id"]) & gold_ids and dataset.prompts == 5
    assert dataset.build_notes["left_out_labelers"] == [
        {"queue_id": queue.pk, "labeler_id": careless.pk, "filter": "min_gold_accuracy", "rate": 0.0}
    ]

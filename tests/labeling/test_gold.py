"""Gold prompts, excluded prompts and extra overlap: agreement with the gold rankings, leasing and scores."""
import random
from collections import defaultdict
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.assignment import services as service
from labeling.assignment.services import lease_next_task, skip_task, submit_ranking, sync_tasks
from labeling.models import Answer, Assignment, Prompt, Queue, SkipReason, Task
from labeling.quality.agreement import pairwise_agreement
from labeling.quality.gold import GOLD_MIN_PROMPTS, gold_scores
from labeling.quality.report import GOLD_COLUMNS, gold_agreement
from tests.conftest import make_queue, make_user

LABEL_COLUMNS = ["prompt_id", "labeler_id", "answer_id", "rank"]
REFERENCE_COLUMNS = ["prompt_id", "answer_id", "rank"]


# --- gold_agreement ----------------------------------------------------------------------------


def random_gold(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and labels with ties; some labels fall outside the reference (other prompts, new answers)."""
    rng = random.Random(seed)
    reference, labels = [], []
    labelers = [f"lab{i}" for i in range(rng.randint(1, 6))]
    for prompt in range(rng.randint(1, 12)):
        answers = list(range(rng.randint(1, 9)))
        gold = prompt < 8  # prompts 8+ have no reference
        if gold:
            reference += [(prompt, a, rng.randint(1, 4)) for a in answers]
        extra = [100] if gold and rng.random() < 0.3 else []  # an answer the reference lacks
        for labeler in rng.sample(labelers, rng.randint(0, len(labelers))):
            labels += [(prompt, labeler, a, rng.randint(1, 4)) for a in answers + extra]
    rng.shuffle(labels)
    return pd.DataFrame(labels, columns=LABEL_COLUMNS), pd.DataFrame(reference, columns=REFERENCE_COLUMNS)


def loop_gold_agreement(labels: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """labeler -> (prompts, agree, n) by a plain loop over labeling.quality.agreement.pairwise_agreement."""
    gold = defaultdict(dict)
    for prompt, answer, rank in reference.itertuples(index=False):
        gold[prompt][answer] = rank
    rankings = defaultdict(dict)
    for prompt, labeler, answer, rank in labels.itertuples(index=False):
        rankings[labeler, prompt][answer] = rank
    totals = {labeler: [0, 0, 0] for labeler in labels["labeler_id"]}
    for (labeler, prompt), ranks in rankings.items():
        shared = [a for a in ranks if a in gold[prompt]]
        if not shared:
            continue
        rate, n = pairwise_agreement([ranks[a] for a in shared], [gold[prompt][a] for a in shared])
        totals[labeler][0] += 1
        totals[labeler][1] += round(rate * n) if n else 0
        totals[labeler][2] += n
    return {labeler: tuple(t) for labeler, t in totals.items()}


@pytest.mark.parametrize("seed", range(30))
def test_gold_agreement_matches_a_plain_loop(seed):
    labels, reference = random_gold(seed)
    result = gold_agreement(labels, reference)

    assert list(result.columns) == GOLD_COLUMNS
    assert list(result["labeler_id"]) == sorted(set(labels["labeler_id"]))
    expected = loop_gold_agreement(labels, reference)
    got = {row.labeler_id: (row.prompts, row.agree, row.n) for row in result.itertuples(index=False)}
    assert got == expected
    for row in result.itertuples(index=False):
        assert row.rate is pd.NA if row.n == 0 else row.rate == row.agree / row.n


def test_gold_agreement_of_no_labels_is_an_empty_frame():
    result = gold_agreement(pd.DataFrame(columns=LABEL_COLUMNS), pd.DataFrame(columns=REFERENCE_COLUMNS))
    assert list(result.columns) == GOLD_COLUMNS and result.empty


def test_gold_agreement_of_all_ties_has_no_rate_and_labels_outside_the_reference_are_ignored():
    reference = pd.DataFrame([(1, 10, 1), (1, 11, 2), (1, 12, 3)], columns=REFERENCE_COLUMNS)
    labels = pd.DataFrame(
        [(1, "tied", 10, 1), (1, "tied", 11, 1), (1, "tied", 12, 1)]
        + [(1, "good", 10, 1), (1, "good", 11, 2), (1, "good", 12, 3), (1, "good", 13, 1)]  # 13: not in reference
        + [(2, "elsewhere", 10, 2), (2, "elsewhere", 11, 1)],  # prompt 2: not in reference
        columns=LABEL_COLUMNS,
    )
    result = gold_agreement(labels, reference).set_index("labeler_id")

    assert result.loc["good", ["prompts", "agree", "n"]].tolist() == [1, 3, 3]
    assert result.loc["good", "rate"] == 1.0
    assert result.loc["tied", ["prompts", "agree", "n"]].tolist() == [1, 0, 0]
    assert result.loc["tied", "rate"] is pd.NA
    assert result.loc["elsewhere", ["prompts", "agree", "n"]].tolist() == [0, 0, 0]
    assert result["rate"].dtype == "Float64"


def test_gold_agreement_refuses_an_answer_ranked_twice_or_without_a_rank():
    reference = pd.DataFrame([(1, 10, 1), (1, 10, 2), (1, 11, 2)], columns=REFERENCE_COLUMNS)
    labels = pd.DataFrame([(1, "a", 10, 1), (1, "a", 11, 2)], columns=LABEL_COLUMNS)
    with pytest.raises(ValueError, match="ranked twice"):
        gold_agreement(labels, reference)
    with pytest.raises(ValueError, match="needs a rank"):
        gold_agreement(labels.assign(rank=[1, None]), reference.drop_duplicates("answer_id"))


# --- leasing -----------------------------------------------------------------------------------


def make_gold(queue: Queue, *prompt_texts: str) -> list[Task]:
    """Make the prompts gold, with their answers in position order as the reference (no ties)."""
    tasks = []
    for text in prompt_texts:
        task = Task.objects.get(prompt__queue=queue, prompt__text=text, kind="ranking")
        task.gold_groups = [[pk] for pk in Answer.objects.filter(prompt=task.prompt).values_list("pk", flat=True)]
        task.save(update_fields=["gold_groups"])
        tasks.append(task)
    return tasks


def rank_as(assignment: Assignment, labeler, groups: list[list[int]]):
    return submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=groups)


def rank_shown(assignment: Assignment, labeler):
    return rank_as(assignment, labeler, [[pk] for pk in assignment.answer_order])


def labelers(count: int) -> list:
    return [make_user(f"gold-labeler-{i}", "labeler") for i in range(count)]


def always_gold(monkeypatch) -> None:
    monkeypatch.setattr(service, "_draw_gold", lambda rate: True)


def test_each_labeler_gets_a_gold_prompt_once_and_it_counts_against_no_overlap(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Mixed", prompts=4, answers=5, ranking_overlap=1, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 3")
    handed_out = defaultdict(list)
    team = labelers(3)
    for who in team:
        for _ in range(2):  # the gold prompt, then a regular one: gold is given once
            lease = lease_next_task(labeler=who)
            handed_out[who.username].append(lease.task.prompt.text)
            if lease.task == gold:
                assert sorted(lease.answer_order) == sorted(gold.prompt.answers.values_list("pk", flat=True))
            assert rank_shown(lease, who).already_submitted is False

    assert dict(handed_out) == {
        "gold-labeler-0": ["Prompt 3", "Prompt 0"],
        "gold-labeler-1": ["Prompt 3", "Prompt 1"],
        "gold-labeler-2": ["Prompt 3", "Prompt 2"],
    }
    assert [lease_next_task(labeler=who) for who in team] == [None, None, None]
    gold.refresh_from_db()
    assert gold.submitted_count == 0
    assert gold.assignments.filter(status=Assignment.Status.SUBMITTED).count() == 3


def test_the_queue_gold_rate_decides_the_draw(db, monkeypatch):
    queue = make_queue("Rate", prompts=3, ranking_overlap=1, gold_rate=0.25)
    make_gold(queue, "Prompt 2")
    rates = []
    monkeypatch.setattr(service, "_draw_gold", lambda rate: rates.append(rate) or False)
    who = labelers(1)[0]

    assert lease_next_task(labeler=who).task.prompt.text == "Prompt 0"
    assert rates == [0.25]
    monkeypatch.undo()
    monkeypatch.setattr(service.random, "random", lambda: 0.2499)
    assert service._draw_gold(0.25) and not service._draw_gold(0.0)


def test_a_gold_lease_costs_one_query_more_than_a_regular_one(db, monkeypatch):
    queue = make_queue("Gold queries", prompts=3, answers=9, ranking_overlap=2, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 2")
    regular_labeler, gold_labeler = labelers(2)
    monkeypatch.setattr(service, "_draw_gold", lambda rate: False)
    with CaptureQueriesContext(connection) as regular:
        assert lease_next_task(labeler=regular_labeler).task != gold
    always_gold(monkeypatch)
    with CaptureQueriesContext(connection) as gold_queries:
        assert lease_next_task(labeler=gold_labeler).task == gold

    assert len(gold_queries) == len(regular) + 1


def test_with_gold_rate_zero_gold_tasks_are_never_leased(db):
    queue = make_queue("No gold", prompts=3, ranking_overlap=1)
    (gold,) = make_gold(queue, "Prompt 0")
    Prompt.objects.filter(pk=gold.prompt_id).update(priority=9)
    who = labelers(1)[0]

    texts = []
    while (lease := lease_next_task(labeler=who)) is not None:
        texts.append(lease.task.prompt.text)
        rank_shown(lease, who)
    assert texts == ["Prompt 1", "Prompt 2"]
    assert not gold.assignments.exists()


def test_no_gold_is_handed_out_once_no_regular_work_is_left(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Done", prompts=2, ranking_overlap=1, gold_rate=0.5)
    make_gold(queue, "Prompt 1")
    first, second = labelers(2)
    rank_shown(lease_next_task(labeler=first), first)  # gold
    rank_shown(lease_next_task(labeler=first), first)  # Prompt 0, the only regular task

    assert lease_next_task(labeler=second) is None


def test_a_gold_prompt_skipped_or_left_to_expire_is_not_offered_again(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Gold once", prompts=3, ranking_overlap=2, gold_rate=0.5)
    skipped, expired = make_gold(queue, "Prompt 1", "Prompt 2")
    who = labelers(1)[0]
    lease = lease_next_task(labeler=who)
    assert lease.task == skipped
    skip_task(assignment_id=lease.pk, labeler=who, reason=SkipReason.UNCLEAR)
    lease = lease_next_task(labeler=who)
    assert lease.task == expired
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert lease_next_task(labeler=who).task.prompt.text == "Prompt 0"


def test_a_late_gold_submit_is_taken_even_on_a_task_whose_overlap_is_used_up(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Late gold", prompts=2, ranking_overlap=1, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 1")
    Task.objects.filter(pk=gold.pk).update(submitted_count=1)  # labelled before it became gold
    who = labelers(1)[0]
    lease = lease_next_task(labeler=who)
    assert lease.task == gold
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert rank_shown(lease, who).already_submitted is False
    gold.refresh_from_db()
    assert gold.submitted_count == 1


def test_a_live_gold_lease_is_resumed(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Resume gold", prompts=2, ranking_overlap=1, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 1")
    Task.objects.filter(pk=gold.pk).update(submitted_count=1)
    who = labelers(1)[0]
    lease = lease_next_task(labeler=who)

    assert lease.task == gold and lease_next_task(labeler=who).pk == lease.pk


def test_excluded_prompts_are_never_leased_and_a_live_lease_on_one_is_not_resumed(db, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Excluded", prompts=4, ranking_overlap=2, gold_rate=0.5)
    make_gold(queue, "Prompt 3")
    Prompt.objects.filter(queue=queue, text__in=["Prompt 0", "Prompt 3"]).update(excluded=True)
    first, second = labelers(2)

    lease = lease_next_task(labeler=first)
    assert lease.task.prompt.text == "Prompt 1"  # not Prompt 0, and no gold
    Prompt.objects.filter(pk=lease.task.prompt_id).update(excluded=True)
    assert lease_next_task(labeler=first).task.prompt.text == "Prompt 2"
    assert rank_shown(lease, first).already_submitted is False  # a lease taken before is still submitted

    texts = []
    while (next_lease := lease_next_task(labeler=second)) is not None:
        texts.append(next_lease.task.prompt.text)
        rank_shown(next_lease, second)
    assert texts == ["Prompt 2"]


def test_extra_overlap_raises_the_overlap_and_the_extra_labeler_gets_the_task(db):
    queue = make_queue("Extra", prompts=2, ranking_overlap=1)
    first, second = labelers(2)
    rank_shown(lease_next_task(labeler=first), first)  # Prompt 0 is complete
    Task.objects.filter(prompt__queue=queue, prompt__text="Prompt 0").update(extra_overlap=2)
    sync_tasks(queue)

    task = Task.objects.get(prompt__queue=queue, prompt__text="Prompt 0")
    assert task.overlap == 3
    assert lease_next_task(labeler=second).task == task


def test_the_rank_page_of_a_gold_task_does_not_say_gold(client, labeler, monkeypatch):
    always_gold(monkeypatch)
    queue = make_queue("Mixed page", prompts=2, ranking_overlap=1, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 1")
    client.force_login(labeler)
    response = client.get(reverse("queue-next-task", args=[queue.pk]), follow=True)

    assert Assignment.objects.get(labeler=labeler).task == gold
    assert response.status_code == 200 and "Prompt 1" in response.content.decode()
    assert "gold" not in response.content.decode().lower()


def test_the_labelers_progress_moves_the_same_after_a_gold_task_as_after_a_regular_one(db, monkeypatch):
    """"Left for you" counted regular tasks only, so it stayed put after a gold submit: the labeler learnt
    that the prompt they had just ranked was gold."""
    from labeling.assignment.selectors import labeler_queues

    queue = make_queue("Progress", prompts=4, ranking_overlap=1, gold_rate=0.5)
    (gold,) = make_gold(queue, "Prompt 3")
    who = labelers(1)[0]

    def left() -> int:
        [mine] = labeler_queues(labeler=who)
        return mine.kinds[0].available

    shown = [left()]
    for draw in (True, False, False):  # gold, then two regular prompts
        monkeypatch.setattr(service, "_draw_gold", lambda rate, draw=draw: draw)
        lease = lease_next_task(labeler=who)
        assert (lease.task == gold) is draw
        shown.append(left())  # while leased: as before
        rank_shown(lease, who)
        shown.append(left())
    assert shown == [4, 4, 3, 3, 2, 2, 1]
    # The last regular prompt: once it is done no gold is handed out any more, so nothing is left.
    rank_shown(lease_next_task(labeler=who), who)
    assert left() == 0 and lease_next_task(labeler=who) is None


def test_a_queue_that_hands_out_no_gold_does_not_count_its_gold_tasks(db):
    from labeling.assignment.selectors import labeler_queues

    queue = make_queue("No gold rate", prompts=3, ranking_overlap=1, gold_rate=0)
    make_gold(queue, "Prompt 2")
    [mine] = labeler_queues(labeler=labelers(1)[0])
    assert mine.kinds[0].available == 2


# --- gold_scores -------------------------------------------------------------------------------


def label_gold(queue: Queue, who, *, reverse_reference: bool) -> None:
    """Lease and rank every gold prompt of the queue, agreeing with or reversing the reference."""
    while (lease := lease_next_task(labeler=who, queue=queue)).task.gold_groups is not None:
        groups = lease.task.gold_groups
        rank_as(lease, who, groups[::-1] if reverse_reference else groups)


@pytest.mark.parametrize("gold_prompts", [GOLD_MIN_PROMPTS, GOLD_MIN_PROMPTS - 1])
def test_gold_scores_flag_a_labeler_reversing_the_reference_after_enough_gold_prompts(
    db, monkeypatch, django_assert_max_num_queries, gold_prompts
):
    always_gold(monkeypatch)
    queue = make_queue("Scores", prompts=gold_prompts + 1, answers=3, ranking_overlap=3, gold_rate=0.5)
    make_gold(queue, *(f"Prompt {i}" for i in range(1, gold_prompts + 1)))
    good, bad = labelers(2)
    label_gold(queue, good, reverse_reference=False)
    label_gold(queue, bad, reverse_reference=True)

    with django_assert_max_num_queries(2):
        scores = gold_scores(queue=queue)

    assert list(scores.columns) == [*GOLD_COLUMNS, "flagged"]
    by_labeler = scores.set_index("labeler_id")
    assert by_labeler.loc[good.pk, ["prompts", "n"]].tolist() == [gold_prompts, 3 * gold_prompts]
    assert by_labeler.loc[good.pk, "rate"] == 1.0 and by_labeler.loc[bad.pk, "rate"] == 0.0
    assert by_labeler.loc[bad.pk, "flagged"] == (gold_prompts >= GOLD_MIN_PROMPTS)
    assert not by_labeler.loc[good.pk, "flagged"]
    assert scores["flagged"].dtype == bool


def test_gold_scores_of_a_queue_without_gold_labels_are_empty(db):
    queue = make_queue("Unlabelled gold", prompts=2)
    make_gold(queue, "Prompt 1")
    scores = gold_scores(queue=queue)
    assert list(scores.columns) == [*GOLD_COLUMNS, "flagged"] and scores.empty

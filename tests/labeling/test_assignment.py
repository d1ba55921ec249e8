"""The assignment rules, through the service functions of labeling.assignment.services.

Lease expiry is simulated by moving `lease_expires_at` into the past in the database.
"""
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling.assignment.services import (
    AssignmentError,
    InvalidLabel,
    TaskFull,
    lease_next_task,
    queues_open_to,
    skip_task,
    submit_demonstration,
    submit_ranking,
    sync_tasks,
)
from labeling.models import (
    Answer,
    AnswerLabel,
    Assignment,
    Demonstration,
    Prompt,
    Queue,
    Ranking,
    SkipReason,
    Task,
    TaskKind,
)
from tests.conftest import make_queue

RANKING = TaskKind.RANKING
DEMONSTRATION = TaskKind.DEMONSTRATION

# Upper bounds for the query-count tests. They include the SAVEPOINT/RELEASE pair of the service's
# transaction.atomic() (the test runs inside a transaction).
MAX_LEASE_QUERIES = 8
MAX_RESUME_QUERIES = 4
MAX_SUBMIT_RANKING_QUERIES = 11  # one of them puts the prompt in the agreement backlog (labeling.quality.aggregates)
MAX_SUBMIT_DEMONSTRATION_QUERIES = 8


def new_labeler(username: str) -> User:
    # No password: hashing one costs a third of a second, and these tests never log in.
    return User.objects.create_user(username=username)


@pytest.fixture
def labelers(db):
    return [new_labeler(f"labeler-{i}") for i in range(6)]


def expire(assignment: Assignment) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def rank(assignment: Assignment, labeler, **extra):
    """Submit the answers in the order they were shown."""
    return submit_ranking(
        assignment_id=assignment.pk, labeler=labeler, groups=[[pk] for pk in assignment.answer_order], **extra
    )


def demonstrate(assignment: Assignment, labeler, text: str = "A careful answer."):
    return submit_demonstration(assignment_id=assignment.pk, labeler=labeler, text=text)


def finish(assignment: Assignment, labeler):
    if assignment.task.kind == RANKING:
        return rank(assignment, labeler)
    return demonstrate(assignment, labeler)


def task_of(prompt_text: str, queue: Queue, kind: str = RANKING) -> Task:
    return Task.objects.get(prompt__queue=queue, prompt__text=prompt_text, kind=kind)


def submitted(task: Task) -> int:
    return Assignment.objects.filter(task=task, status=Assignment.Status.SUBMITTED).count()


# --- which task is next ------------------------------------------------------------------------


def test_next_task_follows_queue_priority_then_prompt_priority_then_age(labeler):
    make_queue("Low", prompts=2, ranking_overlap=1)
    high = make_queue("High", prompts=3, ranking_overlap=1, priority=5)
    Prompt.objects.filter(queue=high, text="Prompt 2").update(priority=1)
    make_queue("Paused", prompts=1, ranking_overlap=1, priority=9, is_open=False)

    handed_out = []
    while (assignment := lease_next_task(labeler=labeler)) is not None:
        handed_out.append((assignment.task.prompt.queue.name, assignment.task.prompt.text))
        rank(assignment, labeler)

    assert handed_out == [
        ("High", "Prompt 2"),
        ("High", "Prompt 0"),
        ("High", "Prompt 1"),
        ("Low", "Prompt 0"),
        ("Low", "Prompt 1"),
    ]


def test_the_oldest_prompt_comes_first_even_when_its_task_was_created_later(labeler):
    # Both prompts start with one answer, so neither has a ranking task; the newer prompt gets its
    # second answer (and task) first.
    queue = make_queue("Late answers", prompts=2, answers=1, ranking_overlap=1)
    older, newer = Prompt.objects.filter(queue=queue).order_by("pk")
    for prompt in (newer, older):
        Answer.objects.create(prompt=prompt, position=1, text="Another answer")
        sync_tasks(queue)
    assert Task.objects.get(prompt=older).pk > Task.objects.get(prompt=newer).pk

    assert lease_next_task(labeler=labeler).task.prompt == older


def test_next_task_hands_out_only_the_queue_and_kind_asked_for(labeler):
    both = make_queue("Both", prompts=2, task_kind=Queue.Kinds.BOTH)
    other = make_queue("Other", prompts=2, priority=10)

    demonstration = lease_next_task(labeler=labeler, queue=both, kind=DEMONSTRATION)
    assert demonstration.task.kind == DEMONSTRATION and demonstration.task.prompt.queue == both
    demonstrate(demonstration, labeler)
    ranking = lease_next_task(labeler=labeler, queue=both, kind=RANKING)
    assert ranking.task.kind == RANKING and ranking.task.prompt.queue == both
    rank(ranking, labeler)
    assert lease_next_task(labeler=labeler, queue=other, kind=DEMONSTRATION) is None


def test_a_kind_the_queue_no_longer_asks_for_is_not_handed_out(labeler, labeler2):
    queue = make_queue("Switched", prompts=2, task_kind=Queue.Kinds.BOTH, ranking_overlap=1)
    queue.task_kind = Queue.Kinds.RANKING
    queue.save()
    sync_tasks(queue)

    kinds = []
    while (assignment := lease_next_task(labeler=labeler)) is not None:
        kinds.append(assignment.task.kind)
        finish(assignment, labeler)
    assert kinds == [RANKING, RANKING]
    assert lease_next_task(labeler=labeler2, queue=queue, kind=DEMONSTRATION) is None


def test_a_prompt_is_leased_to_as_many_labelers_as_it_still_needs(labelers):
    queue = make_queue("Overlap", prompts=2, ranking_overlap=3)
    first, second, third, fourth, fifth, _ = labelers
    rank(lease_next_task(labeler=first), first)  # Prompt 0 now needs two more labels
    leases = [lease_next_task(labeler=who) for who in (second, third, fourth)]

    assert [a.task.prompt.text for a in leases] == ["Prompt 0", "Prompt 0", "Prompt 1"]
    expire(leases[0])
    assert lease_next_task(labeler=fifth).task == task_of("Prompt 0", queue)


def test_asking_again_with_a_live_lease_returns_the_same_assignment(labeler):
    make_queue("Resume", prompts=3, answers=5)
    first = lease_next_task(labeler=labeler)
    again = lease_next_task(labeler=labeler)

    assert again.pk == first.pk
    assert again.answer_order == first.answer_order
    assert again.lease_expires_at == first.lease_expires_at
    assert Assignment.objects.filter(labeler=labeler).count() == 1


def test_an_expired_lease_is_handed_to_another_labeler(labeler, labeler2):
    queue = make_queue("Expiry", prompts=1, ranking_overlap=1)
    lease = lease_next_task(labeler=labeler)
    assert lease_next_task(labeler=labeler2) is None

    expire(lease)
    taken_over = lease_next_task(labeler=labeler2)
    assert taken_over.task == task_of("Prompt 0", queue)
    assert taken_over.lease_expires_at > timezone.now()


def test_an_expired_lease_is_renewed_for_its_own_labeler_with_the_same_answer_order(labeler):
    make_queue("Renew", prompts=1, answers=9, ranking_overlap=1)
    lease = lease_next_task(labeler=labeler)
    expire(lease)

    renewed = lease_next_task(labeler=labeler)
    assert renewed.pk == lease.pk
    assert renewed.answer_order == lease.answer_order
    assert renewed.lease_expires_at > timezone.now()
    renewed.refresh_from_db()
    assert renewed.lease_expires_at > timezone.now()


def test_a_labeler_never_gets_the_same_prompt_twice_for_a_kind(labeler):
    queue = make_queue("Once", prompts=3, task_kind=Queue.Kinds.BOTH, ranking_overlap=3, demonstration_overlap=2)
    seen = []
    while (assignment := lease_next_task(labeler=labeler)) is not None:
        seen.append((assignment.task.prompt_id, assignment.task.kind))
        finish(assignment, labeler)

    assert len(seen) == len(set(seen)) == 6
    assert Task.objects.filter(prompt__queue=queue, submitted_count__lt=F("overlap")).count() == 6


def test_the_database_refuses_a_second_assignment_of_a_task_to_one_labeler(labeler):
    make_queue("Unique", prompts=1)
    lease = lease_next_task(labeler=labeler)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            task=lease.task, labeler=labeler, leased_at=timezone.now(), lease_expires_at=timezone.now()
        )


def test_the_database_refuses_more_submissions_than_the_overlap(db):
    queue = make_queue("Counter", prompts=1, ranking_overlap=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.filter(prompt__queue=queue).update(submitted_count=3)


# --- paused and restricted queues --------------------------------------------------------------


def test_a_paused_queue_hands_out_nothing_not_even_a_live_lease(labeler, labeler2):
    queue = make_queue("Pausable", prompts=2)
    lease = lease_next_task(labeler=labeler)
    queue.is_open = False
    queue.save()

    assert lease_next_task(labeler=labeler) is None
    assert lease_next_task(labeler=labeler2) is None
    assert lease_next_task(labeler=labeler2, queue=queue) is None

    queue.is_open = True
    queue.save()
    assert lease_next_task(labeler=labeler).pk == lease.pk


def test_a_queue_listing_labelers_serves_only_them(labelers):
    listed, other, *_ = labelers
    queue = make_queue("Listed", prompts=2)
    queue.labelers.add(listed)

    assert lease_next_task(labeler=other) is None
    assert lease_next_task(labeler=listed).task.prompt.queue == queue
    assert list(queues_open_to(other)) == []
    assert list(queues_open_to(listed)) == [queue]


def test_a_queue_listing_groups_serves_only_their_members(labelers):
    member, outsider, listed, *_ = labelers
    experts = Group.objects.create(name="experts")
    member.groups.add(experts)
    queue = make_queue("Experts", prompts=3)
    queue.labeler_groups.add(experts)
    queue.labelers.add(listed)

    assert lease_next_task(labeler=outsider) is None
    assert lease_next_task(labeler=member) is not None
    assert lease_next_task(labeler=listed) is not None
    assert set(queues_open_to(member)) == set(queues_open_to(listed)) == {queue}
    assert not queues_open_to(outsider).exists()


def test_a_queue_listing_nobody_is_open_to_every_labeler(labelers):
    open_queue = make_queue("Everyone", prompts=6, ranking_overlap=1)
    restricted = make_queue("Restricted", prompts=1, priority=5)
    restricted.labelers.add(labelers[0])

    for who in labelers[1:]:
        assert lease_next_task(labeler=who).task.prompt.queue == open_queue
        assert list(queues_open_to(who)) == [open_queue]


def test_a_live_lease_is_not_returned_once_the_queue_no_longer_serves_the_labeler(labeler, labeler2):
    queue = make_queue("Restricted later", prompts=2)
    lease_next_task(labeler=labeler)
    queue.labelers.add(labeler2)

    assert lease_next_task(labeler=labeler) is None


# --- answer order ------------------------------------------------------------------------------


def test_answer_order_is_a_permutation_for_rankings_and_empty_for_demonstrations(labeler):
    queue = make_queue("Orders", prompts=1, answers=7, task_kind=Queue.Kinds.BOTH)
    ranking = lease_next_task(labeler=labeler, kind=RANKING)
    answer_ids = list(Answer.objects.filter(prompt__queue=queue).values_list("pk", flat=True))
    assert sorted(ranking.answer_order) == sorted(answer_ids)
    rank(ranking, labeler)

    assert lease_next_task(labeler=labeler, kind=DEMONSTRATION).answer_order == []


def test_answer_order_is_drawn_per_labeler_and_stored(labelers):
    make_queue("Random", prompts=1, answers=9, ranking_overlap=6)
    orders = [lease_next_task(labeler=who).answer_order for who in labelers]
    positional = list(Answer.objects.order_by("position").values_list("pk", flat=True))

    # Six identical draws of 9 answers happen with probability (1/9!)^5.
    assert len({tuple(order) for order in orders}) > 1
    assert any(order != positional for order in orders)
    stored = dict(Assignment.objects.values_list("labeler_id", "answer_order"))
    assert [stored[who.pk] for who in labelers] == orders


# --- submitting --------------------------------------------------------------------------------


def test_a_ranking_stores_ranks_ties_ratings_and_flags(labeler):
    queue = make_queue("Store", prompts=1, answers=4)
    lease = lease_next_task(labeler=labeler)
    a, b, c, d = lease.answer_order

    result = submit_ranking(
        assignment_id=lease.pk,
        labeler=labeler,
        groups=[[c], [a, str(d)], [b]],
        ratings={str(c): "7", a: 5, b: ""},
        flags={str(b): ["harmful", "hallucination", "harmful"]},
        time_spent_ms=1500,
    )

    assert result.already_submitted is False
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.SUBMITTED and lease.finished_at is not None
    assert lease.ranking.groups == [[c], [a, d], [b]]
    labels = {label.answer_id: (label.rank, label.rating, label.flags) for label in AnswerLabel.objects.all()}
    assert labels == {
        c: (1, 7, []),
        a: (2, 5, []),
        d: (2, None, []),
        b: (4, None, ["hallucination", "harmful"]),
    }
    assert task_of("Prompt 0", queue).submitted_count == 1


def test_time_spent_is_capped_by_the_time_since_the_lease(labeler):
    make_queue("Timing", prompts=3, ranking_overlap=1)
    leased_at = timezone.now() - timedelta(seconds=5)
    spent = []
    for claimed in (1234, 10**9, None):
        lease = lease_next_task(labeler=labeler)
        Assignment.objects.filter(pk=lease.pk).update(leased_at=leased_at)
        spent.append(rank(lease, labeler, time_spent_ms=claimed).assignment.time_spent_ms)

    assert spent[0] == 1234
    assert 5000 <= spent[1] < 60_000
    assert 5000 <= spent[2] < 60_000


def test_submitting_a_ranking_twice_returns_the_first_result_and_stores_nothing_twice(labeler):
    queue = make_queue("Twice", prompts=1, answers=3)
    lease = lease_next_task(labeler=labeler)
    first = rank(lease, labeler)
    second = submit_ranking(assignment_id=lease.pk, labeler=labeler, groups=[list(reversed(lease.answer_order))])

    assert (first.already_submitted, second.already_submitted) == (False, True)
    assert second.assignment.pk == first.assignment.pk
    assert Ranking.objects.get().groups == [[pk] for pk in lease.answer_order]
    assert AnswerLabel.objects.count() == 3
    assert task_of("Prompt 0", queue).submitted_count == 1


def test_submitting_a_demonstration_twice_returns_the_first_result_and_stores_nothing_twice(labeler):
    queue = make_queue("Twice demo", prompts=1, task_kind=Queue.Kinds.DEMONSTRATION)
    lease = lease_next_task(labeler=labeler)
    first = demonstrate(lease, labeler, "First.")
    second = demonstrate(lease, labeler, "Second.")

    assert (first.already_submitted, second.already_submitted) == (False, True)
    assert Demonstration.objects.get().text == "First."
    assert task_of("Prompt 0", queue, DEMONSTRATION).submitted_count == 1


def test_a_late_submit_is_accepted_while_the_prompt_still_needs_it(labeler):
    queue = make_queue("Late ok", prompts=1, ranking_overlap=1)
    lease = lease_next_task(labeler=labeler)
    expire(lease)

    assert rank(lease, labeler).already_submitted is False
    assert task_of("Prompt 0", queue).submitted_count == 1


def test_a_late_submit_is_refused_once_others_filled_the_prompt(labeler, labeler2):
    queue = make_queue("Late full", prompts=1, ranking_overlap=1)
    late = lease_next_task(labeler=labeler)
    expire(late)
    rank(lease_next_task(labeler=labeler2), labeler2)

    with pytest.raises(TaskFull, match="expired.*received all the labels it needs.*not stored"):
        rank(late, labeler)
    task = task_of("Prompt 0", queue)
    assert task.submitted_count == submitted(task) == 1
    assert Ranking.objects.count() == 1
    assert Assignment.objects.get(pk=late.pk).status == Assignment.Status.LEASED


def test_a_late_submit_counts_the_live_leases_of_others(labelers):
    queue = make_queue("Late leased", prompts=1, ranking_overlap=2)
    first, second, third, *_ = labelers
    late = lease_next_task(labeler=first)
    expire(late)
    live = [lease_next_task(labeler=second), lease_next_task(labeler=third)]

    with pytest.raises(TaskFull):
        rank(late, first)  # both slots are held by live leases

    expire(live[1])
    assert rank(late, first).already_submitted is False  # one slot is free again
    assert rank(live[0], second).already_submitted is False
    with pytest.raises(TaskFull):
        rank(live[1], third)
    task = task_of("Prompt 0", queue)
    assert task.submitted_count == submitted(task) == 2


def test_a_prompt_never_collects_more_submissions_than_its_overlap(labelers):
    queue = make_queue("Cap", prompts=1, ranking_overlap=2)
    leases = {}
    for who in labelers:  # every labeler leases, lets the lease expire, and tries to submit late
        lease = lease_next_task(labeler=who)
        if lease is not None:
            leases[who] = lease
            expire(lease)
    accepted = 0
    for who, lease in leases.items():
        try:
            accepted += not rank(lease, who).already_submitted
        except TaskFull:
            pass

    task = task_of("Prompt 0", queue)
    assert accepted == task.submitted_count == submitted(task) == 2
    assert Ranking.objects.count() == 2


# --- invalid labels ----------------------------------------------------------------------------


def _missing_one(order, foreign):
    return {"groups": [[pk] for pk in order[:-1]]}


def _placed_twice(order, foreign):
    return {"groups": [[pk] for pk in order] + [[order[0]]]}


def _foreign_answer(order, foreign):
    return {"groups": [[pk] for pk in order[:-1]] + [[foreign]]}


def _extra_foreign_answer(order, foreign):
    return {"groups": [[pk] for pk in order] + [[foreign]]}


def _empty_group(order, foreign):
    return {"groups": [[pk] for pk in order] + [[]]}


def _rating(value):
    return lambda order, foreign: {"groups": [order], "ratings": {order[0]: value}}


def _flags(flags):
    return lambda order, foreign: {"groups": [order], "flags": flags(order, foreign)}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_missing_one, "Place every answer"),
        (_placed_twice, "placed twice"),
        (_foreign_answer, "does not belong"),
        (_extra_foreign_answer, "does not belong"),
        (_empty_group, "empty group"),
        (lambda order, foreign: {"groups": "best first"}, "list of groups"),
        (_rating(0), "from 1 to 7"),
        (_rating(8), "from 1 to 7"),
        (_rating("4.5"), "from 1 to 7"),
        (lambda order, foreign: {"groups": [order], "ratings": {foreign: 3}}, "not an answer of this prompt"),
        (lambda order, foreign: {"groups": [order], "ratings": [3, 4, 5]}, "Ratings must map"),
        (_flags(lambda order, foreign: {order[0]: ["boring"]}), "Unknown flag"),
        (_flags(lambda order, foreign: {foreign: ["harmful"]}), "not an answer of this prompt"),
        (_flags(lambda order, foreign: {order[0]: "harmful"}), "list"),
        (_flags(lambda order, foreign: {order[0]: [["harmful"]]}), "list"),
    ],
)
def test_an_invalid_ranking_raises_invalid_label_and_stores_nothing(labeler, bad, message):
    queue = make_queue("Invalid", prompts=2, answers=4)
    lease = lease_next_task(labeler=labeler)
    foreign = Answer.objects.exclude(prompt=lease.task.prompt).values_list("pk", flat=True).first()

    with pytest.raises(InvalidLabel, match=message):
        submit_ranking(assignment_id=lease.pk, labeler=labeler, **bad(lease.answer_order, foreign))

    assert Ranking.objects.count() == AnswerLabel.objects.count() == 0
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.LEASED
    assert task_of("Prompt 0", queue).submitted_count == 0
    assert rank(lease, labeler).already_submitted is False  # the labeler can correct and submit


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("  \n\t ", "empty"), ("before\x00after", "NUL"), ("x" * 51, "limit is 50"), (None, "empty")],
)
def test_an_invalid_demonstration_raises_invalid_label_and_stores_nothing(labeler, settings, text, message):
    settings.MAX_TEXT_CHARS = 50
    queue = make_queue("Invalid demo", prompts=1, task_kind=Queue.Kinds.DEMONSTRATION)
    lease = lease_next_task(labeler=labeler)

    with pytest.raises(InvalidLabel, match=message):
        submit_demonstration(assignment_id=lease.pk, labeler=labeler, text=text)

    assert Demonstration.objects.count() == 0
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.LEASED
    assert demonstrate(lease, labeler, "x" * 50).already_submitted is False
    assert task_of("Prompt 0", queue, DEMONSTRATION).submitted_count == 1


def test_only_the_labeler_can_submit_their_assignment_and_only_as_its_kind(labeler, labeler2):
    make_queue("Mine", prompts=1, task_kind=Queue.Kinds.BOTH)
    ranking = lease_next_task(labeler=labeler, kind=RANKING)

    with pytest.raises(AssignmentError, match="no such task"):
        rank(ranking, labeler2)
    with pytest.raises(AssignmentError, match="not a demonstration task"):
        demonstrate(ranking, labeler)
    for bad_id in (ranking.pk + 1000, "abc", None):
        with pytest.raises(AssignmentError, match="no such task"):
            submit_ranking(assignment_id=bad_id, labeler=labeler, groups=[])
    assert Ranking.objects.count() == Demonstration.objects.count() == 0


# --- skipping ----------------------------------------------------------------------------------


def test_a_skip_does_not_count_and_the_skipper_is_never_offered_the_prompt_again(labeler, labeler2):
    queue = make_queue("Skip", prompts=1, task_kind=Queue.Kinds.BOTH, ranking_overlap=1)
    ranking = lease_next_task(labeler=labeler, kind=RANKING)
    skipped = skip_task(assignment_id=ranking.pk, labeler=labeler, reason=SkipReason.HARMFUL, time_spent_ms=10)

    assert skipped.status == Assignment.Status.SKIPPED and skipped.skip_reason == SkipReason.HARMFUL
    assert task_of("Prompt 0", queue).submitted_count == 0
    assert lease_next_task(labeler=labeler, kind=RANKING) is None
    # The other kind of the same prompt is still offered to the skipper.
    assert lease_next_task(labeler=labeler, kind=DEMONSTRATION).task.kind == DEMONSTRATION
    # The skipped slot goes to someone else.
    assert lease_next_task(labeler=labeler2, kind=RANKING).task == task_of("Prompt 0", queue)


def test_a_skip_for_other_reasons_needs_a_note(labeler):
    make_queue("Skip note", prompts=1)
    lease = lease_next_task(labeler=labeler)

    for note in ("", "   "):
        with pytest.raises(InvalidLabel, match="Say why"):
            skip_task(assignment_id=lease.pk, labeler=labeler, reason=SkipReason.OTHER, note=note)
    for reason in ("", "bored", None):
        with pytest.raises(InvalidLabel, match="Choose a reason"):
            skip_task(assignment_id=lease.pk, labeler=labeler, reason=reason)
    for note in ("x" * 2001, "a\x00b"):
        with pytest.raises(InvalidLabel, match="at most 2000"):
            skip_task(assignment_id=lease.pk, labeler=labeler, reason=SkipReason.OTHER, note=note)
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.LEASED

    skipped = skip_task(assignment_id=lease.pk, labeler=labeler, reason=SkipReason.OTHER, note="  Not English. ")
    skipped.refresh_from_db()
    assert (skipped.status, skipped.skip_reason, skipped.skip_note) == ("skipped", "other", "Not English.")


def test_skip_and_submit_exclude_each_other(labeler, labeler2):
    make_queue("Skip or submit", prompts=2, ranking_overlap=2)
    skipped = lease_next_task(labeler=labeler)
    skip_task(assignment_id=skipped.pk, labeler=labeler, reason=SkipReason.UNCLEAR)
    assert skip_task(assignment_id=skipped.pk, labeler=labeler, reason=SkipReason.UNCLEAR).pk == skipped.pk
    with pytest.raises(AssignmentError, match="skipped"):
        rank(skipped, labeler)

    done = lease_next_task(labeler=labeler)
    rank(done, labeler)
    with pytest.raises(AssignmentError, match="already submitted"):
        skip_task(assignment_id=done.pk, labeler=labeler, reason=SkipReason.UNCLEAR)
    with pytest.raises(AssignmentError, match="no such task"):
        skip_task(assignment_id=done.pk, labeler=labeler2, reason=SkipReason.UNCLEAR)
    assert Ranking.objects.count() == 1


# --- sync_tasks --------------------------------------------------------------------------------


def test_sync_tasks_creates_one_task_per_prompt_and_kind_and_rankings_only_with_two_answers(db):
    queue = Queue.objects.create(name="Sync", task_kind=Queue.Kinds.BOTH, ranking_overlap=4, demonstration_overlap=2)
    for i, answers in enumerate([0, 1, 2, 9]):
        prompt = Prompt.objects.create(queue=queue, text=f"Prompt {i}", content_hash=f"sync-{i}")
        Answer.objects.bulk_create(Answer(prompt=prompt, position=j, text="a") for j in range(answers))

    assert sync_tasks(queue) == 4 + 2
    assert sync_tasks(queue) == 0
    tasks = set(Task.objects.values_list("prompt__text", "kind", "overlap"))
    assert tasks == {(f"Prompt {i}", DEMONSTRATION, 2) for i in range(4)} | {
        ("Prompt 2", RANKING, 4),
        ("Prompt 3", RANKING, 4),
    }


def test_sync_tasks_applies_a_new_overlap_but_never_below_the_labels_a_task_has(labelers):
    queue = make_queue("Resize", prompts=2, ranking_overlap=3)
    for who in labelers[:2]:
        rank(lease_next_task(labeler=who, queue=queue), who)  # Prompt 0 has two labels
    queue.ranking_overlap = 1
    queue.save()
    sync_tasks(queue)
    assert task_of("Prompt 0", queue).overlap == 2
    assert task_of("Prompt 1", queue).overlap == 1
    assert lease_next_task(labeler=labelers[2]).task == task_of("Prompt 1", queue)

    queue.ranking_overlap = 4
    queue.save()
    sync_tasks(queue)
    assert task_of("Prompt 0", queue).overlap == 4
    assert lease_next_task(labeler=labelers[3]).task == task_of("Prompt 0", queue)


def test_a_live_lease_on_a_task_filled_by_a_lowered_overlap_is_not_resumed(labelers):
    queue = make_queue("Lowered", prompts=2, ranking_overlap=2)
    first, second = labelers[:2]
    mine = lease_next_task(labeler=first, queue=queue)
    theirs = lease_next_task(labeler=second, queue=queue)
    assert mine.task == theirs.task == task_of("Prompt 0", queue)
    rank(theirs, second)
    queue.ranking_overlap = 1
    queue.save()
    sync_tasks(queue)  # Prompt 0 is now complete, under first's live lease

    assert lease_next_task(labeler=first, queue=queue).task == task_of("Prompt 1", queue)
    with pytest.raises(TaskFull, match="^The prompt has since received all the labels it needs"):
        rank(mine, first)
    assert submitted(task_of("Prompt 0", queue)) == 1


# --- query counts ------------------------------------------------------------------------------


@contextmanager
def counted(bound: int, django_assert_max_num_queries):
    with django_assert_max_num_queries(bound), CaptureQueriesContext(connection) as queries:
        yield queries


@pytest.mark.aggregates_on_commit  # the worker counts the agreement figures, not the submit
@pytest.mark.parametrize("kind", [RANKING, DEMONSTRATION])
def test_next_task_and_submit_run_the_same_few_queries_whatever_the_size(db, kind, django_assert_max_num_queries):
    submit_bound = MAX_SUBMIT_RANKING_QUERIES if kind == RANKING else MAX_SUBMIT_DEMONSTRATION_QUERIES
    counts = {}
    for answers in (2, 9):
        for prompts in (3, 200):
            name = f"{kind} {answers}x{prompts}"
            queue = make_queue(
                name, prompts=prompts, answers=answers, task_kind=kind, ranking_overlap=5, demonstration_overlap=5
            )
            first, second, third, labeler = (new_labeler(f"{name} {i}") for i in range(4))
            finish(lease_next_task(labeler=first, queue=queue), first)  # a partly labeled queue
            lease_next_task(labeler=second, queue=queue)
            late = lease_next_task(labeler=third, queue=queue)
            expire(late)

            with counted(MAX_LEASE_QUERIES, django_assert_max_num_queries) as lease_queries:
                lease = lease_next_task(labeler=labeler, queue=queue)
            with counted(MAX_RESUME_QUERIES, django_assert_max_num_queries) as resume_queries:
                assert lease_next_task(labeler=labeler, queue=queue).pk == lease.pk
            with counted(submit_bound, django_assert_max_num_queries) as submit_queries:
                assert finish(lease, labeler).already_submitted is False
            # A late submit also counts the live leases of others: one query more.
            with counted(submit_bound + 1, django_assert_max_num_queries) as late_queries:
                assert finish(late, third).already_submitted is False
            counts[(answers, prompts)] = tuple(map(len, (lease_queries, resume_queries, submit_queries, late_queries)))

    print(f"\n{kind} queries (next task, next task again, submit, late submit) by (answers, prompts): {counts}")
    assert len(set(counts.values())) == 1, counts

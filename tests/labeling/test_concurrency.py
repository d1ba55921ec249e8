"""Many labelers at once on PostgreSQL: no prompt is over-assigned, no label is stored twice.

Each thread has its own database connection (Django keeps one per thread) and closes it when done.
"""
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from labeling.assignment import services as service
from labeling.assignment.services import TaskFull, lease_next_task, skip_task, submit_demonstration, submit_ranking
from labeling.models import AnswerLabel, Assignment, Demonstration, Queue, Ranking, SkipReason, Task, TaskKind
from tests.conftest import make_queue

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite has no row locks (SELECT ... FOR UPDATE SKIP LOCKED) and one writer",
    ),
]

LABELERS = 24
PROMPTS = 20
ANSWERS = 4
LEASE_SECONDS = 3  # below the form's minimum of 30, so that abandoned leases expire during the test; long
# enough that, on a loaded machine, a lease is still live when the call that took it returns
IDLE_PATIENCE = timedelta(seconds=4 * LEASE_SECONDS)  # a labeler stops after this long with nothing to do


def new_labeler(username: str) -> User:
    return User.objects.create_user(username=username)


def run_together(calls: list, timeout: float = 120) -> list:
    """Run each call in its own thread, released at once by a barrier; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[str] = []

    def run(index: int, call) -> None:
        try:
            connection.ensure_connection()  # connect before the barrier, so all start on equal terms
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException:
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "threads still running after the timeout"
    assert not errors, f"{len(errors)} thread(s) failed; the first:\n{errors[0]}"
    return results


def random_groups(order: list[int], rng: random.Random) -> list[list[int]]:
    """A random ranking of `order`, with some ties."""
    groups: list[list[int]] = []
    for answer_id in rng.sample(order, len(order)):
        if groups and rng.random() < 0.3:
            groups[-1].append(answer_id)
        else:
            groups.append([answer_id])
    return groups


def submit(assignment: Assignment, labeler, rng: random.Random):
    if assignment.task.kind == TaskKind.RANKING:
        return submit_ranking(
            assignment_id=assignment.pk,
            labeler=labeler,
            groups=random_groups(assignment.answer_order, rng),
            ratings={answer_id: rng.randint(1, 7) for answer_id in assignment.answer_order},
        )
    return submit_demonstration(assignment_id=assignment.pk, labeler=labeler, text=f"Written by {labeler.username}.")


@dataclass
class Event:
    """One call a labeler made, timed from before the call to after it returned (and committed)."""

    action: str  # lease, abandon, submit, skip
    outcome: str  # leased; abandoned; submitted, repeat, full (TaskFull); skipped
    labeler_id: int
    assignment_id: int
    task_id: int
    started: datetime
    ended: datetime
    lease_expires_at: datetime | None = None


def work(labeler: User, queue: Queue, seed: int) -> list[Event]:
    """Keep asking for the next task until there has been nothing for a while; act on each at random."""
    rng = random.Random(seed)
    events: list[Event] = []
    abandons_left = 2
    idle_since = None

    def record(action, outcome, assignment, started, **extra):
        events.append(Event(action, outcome, labeler.pk, assignment.pk, assignment.task_id, started, timezone.now(),
                            **extra))

    while True:
        started = timezone.now()
        assignment = lease_next_task(labeler=labeler, queue=queue)
        if assignment is None:
            idle_since = idle_since or started
            if timezone.now() - idle_since > IDLE_PATIENCE:
                return events
            time.sleep(0.05)
            continue
        idle_since = None
        record("lease", "leased", assignment, started, lease_expires_at=assignment.lease_expires_at)

        roll = rng.random()
        if roll < 0.1:
            started = timezone.now()
            reason = rng.choice(SkipReason.values)
            skip_task(assignment_id=assignment.pk, labeler=labeler, reason=reason, note="Not for me.")
            record("skip", "skipped", assignment, started)
            continue
        if roll < 0.25 and abandons_left:
            # Walk away until the lease has expired; come back to submit late, or do not.
            abandons_left -= 1
            started = timezone.now()
            # The lease may already be over on a busy machine: never a negative sleep.
            time.sleep(max(0.0, (assignment.lease_expires_at - started).total_seconds()) + 0.05)
            record("abandon", "abandoned", assignment, started)
            if rng.random() < 0.5:
                continue
        for _ in range(2 if rng.random() < 0.3 else 1):  # some submit twice (double click, retry)
            started = timezone.now()
            try:
                result = submit(assignment, labeler, rng)
            except TaskFull:
                record("submit", "full", assignment, started)
                break
            record("submit", "repeat" if result.already_submitted else "submitted", assignment, started)


def live_lease_intervals(events: list[Event]) -> dict[int, list[tuple[datetime, datetime]]]:
    """Per task, the times each lease was certainly live: from the end of the lease call (committed)
    to the start of the labeler's next submit or skip of it, or the lease's expiry if sooner."""
    by_task = defaultdict(list)
    for lease in (e for e in events if e.action == "lease"):
        finishing = [
            e.started
            for e in events
            if e.action in ("submit", "skip") and e.assignment_id == lease.assignment_id and e.started >= lease.ended
        ]
        end = min([lease.lease_expires_at, *finishing])
        if lease.ended < end:
            by_task[lease.task_id].append((lease.ended, end))
    return by_task


def most_live_leases(events: list[Event], tasks: dict[int, Task]) -> int:
    """Check that at no moment more labelers held or were done with a task than it needed; return the
    most leases live at once on one task.

    At every moment the count can rise, it counts the leases certainly live then and the submissions
    certainly stored. A call is only known to have happened between its start and its end, so these
    are lower bounds of the true counts: a failure is a real over-assignment, never a timing artefact.
    """
    intervals = live_lease_intervals(events)
    stored_at = defaultdict(list)
    for event in events:
        if event.outcome == "submitted":
            stored_at[event.task_id].append(event.ended)
    most_live = 0
    for task_id, task in tasks.items():
        for moment in [start for start, _ in intervals[task_id]] + stored_at[task_id]:
            live = sum(1 for start, end in intervals[task_id] if start <= moment < end)
            stored = sum(1 for at in stored_at[task_id] if at <= moment)
            assert live + stored <= task.overlap, (task, moment, live, stored)
            most_live = max(most_live, live)
    return most_live


def assert_labels_match_assignments() -> None:
    """Every task has exactly its overlap of submissions, each with one label; nothing else is stored."""
    submitted = dict(
        Assignment.objects.filter(status=Assignment.Status.SUBMITTED)
        .values_list("task")
        .annotate(n=Count("pk"))
        .values_list("task", "n")
    )
    for task in Task.objects.all():
        assert task.submitted_count == submitted.get(task.pk, 0) == task.overlap, task
    submitted_ids = Assignment.objects.filter(status=Assignment.Status.SUBMITTED).values_list("pk", flat=True)
    assert set(Ranking.objects.values_list("assignment", flat=True)) == set(
        submitted_ids.filter(task__kind=TaskKind.RANKING)
    )
    assert set(Demonstration.objects.values_list("assignment", flat=True)) == set(
        submitted_ids.filter(task__kind=TaskKind.DEMONSTRATION)
    )
    assert AnswerLabel.objects.count() == Ranking.objects.count() * ANSWERS
    assert not Assignment.objects.values("task", "labeler").annotate(n=Count("pk")).filter(n__gt=1).exists()
    now = timezone.now()
    for task in Task.objects.all():
        live = Assignment.objects.filter(task=task, status="leased", lease_expires_at__gt=now).count()
        assert live + task.submitted_count <= task.overlap


def assert_events_match_assignments(per_labeler: list[list[Event]]) -> None:
    """What each labeler was told agrees with the database, and with the rules for one labeler."""
    events = [event for events in per_labeler for event in events]
    submitted_ids = set(Assignment.objects.filter(status="submitted").values_list("pk", flat=True))
    skipped_ids = set(Assignment.objects.filter(status="skipped").values_list("pk", flat=True))
    # Each label was stored exactly once, by the call that said so.
    assert sorted(e.assignment_id for e in events if e.outcome == "submitted") == sorted(submitted_ids)
    assert {e.assignment_id for e in events if e.outcome == "skipped"} == skipped_ids
    assert {e.assignment_id for e in events if e.outcome == "repeat"} <= submitted_ids
    # A submit refused as full stored nothing: if that assignment holds a label, a later submit stored it
    # (the labeler's lease was renewed when the others' live leases lapsed and the prompt had room again).
    submitted_at = {e.assignment_id: e.started for e in events if e.outcome == "submitted"}
    for event in events:
        if event.outcome == "full" and event.assignment_id in submitted_at:
            assert submitted_at[event.assignment_id] >= event.ended, event

    for events_of_one in per_labeler:  # one labeler's calls are sequential
        assignment_of_task: dict[int, int] = {}
        finished_tasks = set()
        for event in events_of_one:
            if event.action == "lease":
                assert event.lease_expires_at > event.started  # handed out live
                assert assignment_of_task.setdefault(event.task_id, event.assignment_id) == event.assignment_id
                assert event.task_id not in finished_tasks  # never again after submit or skip
            elif event.outcome in ("submitted", "repeat", "skipped"):
                finished_tasks.add(event.task_id)


def test_many_labelers_at_once_never_over_assign_a_prompt(transactional_db):
    queue = make_queue(
        "Crowd",
        prompts=PROMPTS,
        answers=ANSWERS,
        task_kind=Queue.Kinds.BOTH,
        ranking_overlap=3,
        demonstration_overlap=1,
        lease_seconds=LEASE_SECONDS,
    )
    labelers = [new_labeler(f"crowd-{i}") for i in range(LABELERS)]

    per_labeler = run_together([lambda who=who, i=i: work(who, queue, seed=i) for i, who in enumerate(labelers)])

    events = [event for events in per_labeler for event in events]
    tasks = {task.pk: task for task in Task.objects.all()}
    assert len(tasks) == 2 * PROMPTS
    assert_labels_match_assignments()  # also: every task got all its labels
    assert_events_match_assignments(per_labeler)
    most_live = most_live_leases(events, tasks)

    outcomes = Counter(event.outcome for event in events)
    print(f"\n{LABELERS} labelers, {len(events)} calls: {dict(outcomes)}; most leases live at once: {most_live}")
    # The run exercised what it is meant to, including several labelers on one prompt at once.
    assert outcomes["submitted"] == sum(task.overlap for task in tasks.values())
    assert outcomes["skipped"] and outcomes["repeat"] and outcomes["abandoned"]
    assert most_live >= 2


@pytest.mark.parametrize("kind", [TaskKind.RANKING, TaskKind.DEMONSTRATION])
def test_many_simultaneous_submits_of_one_assignment_store_one_label(transactional_db, kind):
    queue = make_queue("Clicks", prompts=1, answers=ANSWERS, task_kind=kind)
    labeler = new_labeler("clicker")
    lease = lease_next_task(labeler=labeler)

    results = run_together([lambda i=i: submit(lease, labeler, random.Random(i)) for i in range(16)])

    assert sorted(result.already_submitted for result in results) == [False] + [True] * 15
    assert {result.assignment.pk for result in results} == {lease.pk}
    task = Task.objects.get(prompt__queue=queue)
    assert task.submitted_count == 1
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.SUBMITTED
    if kind == TaskKind.RANKING:
        assert (Ranking.objects.count(), AnswerLabel.objects.count(), Demonstration.objects.count()) == (1, ANSWERS, 0)
    else:
        assert (Ranking.objects.count(), Demonstration.objects.count()) == (0, 1)


def test_simultaneous_next_task_requests_of_one_labeler_get_one_lease(transactional_db):
    make_queue("Double click", prompts=5, answers=ANSWERS)
    labeler = new_labeler("double-clicker")

    leases = run_together([lambda: lease_next_task(labeler=labeler) for _ in range(16)])

    assert len({lease.pk for lease in leases}) == 1
    assert len({tuple(lease.answer_order) for lease in leases}) == 1
    assert Assignment.objects.count() == 1


class Request(threading.Thread):
    """One call in a thread of its own, whose database backend can be watched from outside."""

    def __init__(self, call):
        super().__init__(daemon=True)
        self.call, self.result, self.error = call, None, None
        self.backend_pid: int | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend_pid = cursor.fetchone()[0]
            self.connected.set()
            self.result = self.call()
        except BaseException as error:
            self.error = error
        finally:
            connection.close()


def wait_until_blocked(request: Request, timeout: float = 10) -> None:
    assert request.connected.wait(timeout)
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [request.backend_pid])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the request never waited for a lock")


def test_a_submit_that_waited_past_its_lease_does_not_take_the_slot_of_a_new_lease(transactional_db):
    """A submit arrives while its lease is live but gets its locks only after the lease expired and
    another labeler leased the prompt: it is a late submit, and the new lease keeps its slot."""
    queue = make_queue("Slow submit", prompts=1, answers=ANSWERS, ranking_overlap=1)
    slow, other = new_labeler("slow"), new_labeler("other")
    lease = lease_next_task(labeler=slow)
    expires = timezone.now() + timedelta(seconds=1.5)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=expires)

    late = Request(lambda: submit(lease, slow, random.Random(0)))
    with transaction.atomic():
        # Hold the assignment row, as another request on it would: the submit waits for it.
        Assignment.objects.select_for_update().get(pk=lease.pk)
        late.start()
        wait_until_blocked(late)
        assert timezone.now() < expires, "the submit should have arrived before its lease expired"
        time.sleep((expires - timezone.now()).total_seconds() + 0.1)
        taker = Request(lambda: lease_next_task(labeler=other))
        taker.start()
        taker.join(10)
        assert taker.error is None and taker.result is not None
    late.join(10)

    assert isinstance(late.error, TaskFull), late.result or late.error
    assert submit(taker.result, other, random.Random(1)).already_submitted is False
    task = Task.objects.get(prompt__queue=queue)
    assert task.submitted_count == 1
    assert Ranking.objects.get().assignment.labeler == other


def two_tabs(first, second, *, once: threading.Event) -> tuple[Request, Request]:
    """Run `first` in one tab until it reaches `once`, then `second` in another; returns both, finished."""
    tab_first, tab_second = Request(first), Request(second)
    tab_first.start()
    assert once.wait(10)
    tab_second.start()
    tab_first.join(15)
    tab_second.join(15)
    return tab_first, tab_second


def slow_down(monkeypatch, name: str) -> threading.Event:
    """Make labeling.assignment.services.<name> wait half a second; the event is set when it is reached."""
    reached = threading.Event()
    original = getattr(service, name)

    def waiting(*args, **kwargs):
        reached.set()
        time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, name, waiting)
    return reached


def test_a_late_submit_and_a_next_task_request_of_one_labeler_do_not_deadlock(transactional_db, monkeypatch):
    """Two tabs: the labeler submits a task whose lease expired while asking for the next task, which
    would renew that very lease. The submit is slowed down between its lock of the assignment and its
    lock of the task, so that the next-task request gets to the task in between."""
    make_queue("Two tabs", prompts=1, answers=ANSWERS, ranking_overlap=1)
    labeler = new_labeler("two-tabs")
    lease = lease_next_task(labeler=labeler)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    checking = slow_down(monkeypatch, "clean_groups")

    tab_submit, tab_next = two_tabs(
        lambda: submit(lease, labeler, random.Random(0)), lambda: lease_next_task(labeler=labeler), once=checking
    )

    assert tab_submit.error is None and tab_next.error is None, (tab_submit.error, tab_next.error)
    assert tab_submit.result.already_submitted is False
    assert tab_next.result is None  # the only prompt is done by this labeler
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.SUBMITTED
    assert Task.objects.get().submitted_count == 1


def test_a_prompt_being_skipped_is_not_handed_back_to_the_skipper(transactional_db, monkeypatch):
    """Two tabs again: the labeler skips a task whose lease expired while asking for the next task."""
    make_queue("Skip in one tab", prompts=1, answers=ANSWERS, ranking_overlap=1)
    labeler = new_labeler("skipper")
    lease = lease_next_task(labeler=labeler)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    closing = slow_down(monkeypatch, "_close")

    tab_skip, tab_next = two_tabs(
        lambda: skip_task(assignment_id=lease.pk, labeler=labeler, reason=SkipReason.UNCLEAR),
        lambda: lease_next_task(labeler=labeler),
        once=closing,
    )

    assert tab_skip.error is None and tab_next.error is None, (tab_skip.error, tab_next.error)
    assert tab_next.result is None, "the skipped prompt was handed back"
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.SKIPPED


def test_next_task_waits_for_a_briefly_locked_task_instead_of_saying_nothing_is_left(transactional_db):
    queue = make_queue("Locked", prompts=1, answers=2, ranking_overlap=1)
    labeler = new_labeler("waiter")
    locked, release = threading.Event(), threading.Event()

    def hold_the_only_task() -> None:  # as another labeler's request does for a few milliseconds
        try:
            with transaction.atomic():
                Task.objects.select_for_update().get(prompt__queue=queue)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_only_task)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    leased = lease_next_task(labeler=labeler, queue=queue)
    waited = time.monotonic() - started
    holder.join(10)
    assert leased is not None and leased.task.prompt.queue_id == queue.pk
    assert waited >= 0.4  # it waited for the lock rather than skipping the only task


def test_a_labeler_is_not_held_up_by_another_transaction_that_names_them_in_a_foreign_key(transactional_db):
    """The worker stores agreement rows naming labelers (foreign-key checks take KEY SHARE on their rows) while
    they keep labeling: their lease and submit must not wait for that transaction. With FOR UPDATE as the
    labeler's turn lock they did, and at 1,000 labelers submits queued for seconds (docs/load.md)."""
    queue = make_queue("Shared", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)
    labeler = new_labeler("busy")
    holding, release = threading.Event(), threading.Event()

    def worker_transaction():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM auth_user WHERE id = %s FOR KEY SHARE", [labeler.pk])
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=worker_transaction)
    thread.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # a wait would fail here instead of hanging
        leased = lease_next_task(labeler=labeler, queue=queue)
        submit_ranking(assignment_id=leased.pk, labeler=labeler, groups=[[pk] for pk in leased.answer_order])
        assert Ranking.objects.filter(assignment=leased).exists()
    finally:
        release.set()
        thread.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

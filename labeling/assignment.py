"""Leasing tasks to labelers and taking their labels: the rules that must never be wrong.

- Next task: the first task, by queue priority, then prompt priority, then oldest prompt (lowest id),
  in an open queue the labeler may work on, that still needs labels of its kind, that this labeler
  has not labeled or skipped, and whose live leases plus submissions are fewer than its overlap. Each
  queue's open tasks are read in that order from one partial index (Task.task_open_in_order), so the
  cost does not grow with the queue. The task row is locked with SKIP LOCKED, so concurrent requests
  take different tasks, and the room is re-counted under the lock with a fresh statement. Excluded
  prompts and gold tasks are never candidates.
- Gold: once a ranking candidate is locked (so the labeler has real work in that queue), with the
  queue's gold rate the labeler gets instead a gold task of that queue they have never been given.
  Gold tasks are shared by every labeler: no room check, and their labels count against no overlap.
- Submit: the labeler's row (one labeler's requests take turns), the assignment and the task row are
  locked; a second submit of the same assignment returns
  the first result; a late submit (lease expired) is taken only if the task still has room once live
  leases of other labelers are counted; the task's counter cannot pass its overlap (a DB constraint).
  A gold task's submit is always taken.
"""
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from .models import (
    MIN_RANKED_ANSWERS,
    Answer,
    AnswerLabel,
    Assignment,
    Demonstration,
    Flag,
    Prompt,
    Queue,
    Ranking,
    SkipReason,
    Task,
    TaskKind,
)
from .rankings import clean_flags, clean_groups, clean_ratings, ranks_by_answer

# How many locked candidates to re-check before giving up; more than one is needed only when
# another request filled a task between our read and our lock.
MAX_LEASE_ATTEMPTS = 10
DEADLOCK_RETRIES = 3
MAX_SKIP_NOTE_CHARS = 2000


class AssignmentError(Exception):
    """A request about an assignment that cannot be honoured; the message is for the labeler."""


class TaskFull(AssignmentError):
    """The lease expired and the prompt got the labels it needed from others."""


class InvalidLabel(AssignmentError):
    """The submitted label is incomplete or malformed."""


@dataclass(frozen=True)
class SubmitResult:
    assignment: Assignment
    already_submitted: bool  # True when this was a repeat of an earlier, stored submit


def queues_open_to(labeler) -> QuerySet[Queue]:
    """Open queues this labeler may work on (listed, in a listed group, or the queue lists nobody)."""
    members = Queue.labelers.through.objects.filter(queue=OuterRef("pk"))
    group_members = Queue.labeler_groups.through.objects.filter(queue=OuterRef("pk"))
    listed = Exists(members.filter(user=labeler)) | Exists(group_members.filter(group__user=labeler))
    restricted = Exists(members) | Exists(group_members)
    return Queue.objects.filter(is_open=True).filter(listed | ~restricted)


def _take_turn(labeler) -> None:
    """Lock the labeler's row, so that one labeler's requests (double clicks, two tabs) take turns.

    Every request that changes an assignment takes it first: renewing an expired lease locks the task
    and then the assignment, the opposite order of a submit, and the two would otherwise deadlock.
    """
    get_user_model().objects.select_for_update().filter(pk=labeler.pk).exists()


def _live_lease(now) -> Q:
    return Q(status=Assignment.Status.LEASED, lease_expires_at__gt=now)


def _work_lists(*, labeler, queue: Queue | None, kind: str | None) -> list[list[tuple[int, str]]]:
    """The (queue id, task kind) lists this labeler may take tasks from, by queue priority, highest first.

    Lists of queues with the same priority share a level: their tasks compete by task order. A queue
    switched to one kind keeps its tasks of the other kind (they may hold labels); they are left out.
    """
    if queue is not None:  # whether it is open to the labeler, the candidate query checks
        queues = [(queue.pk, queue.priority, queue.task_kind)]
    else:
        queues = queues_open_to(labeler).order_by("-priority", "pk").values_list("pk", "priority", "task_kind")
    levels: dict[int, list[tuple[int, str]]] = {}
    for queue_id, priority, task_kind in queues:
        kinds = TaskKind.values if task_kind == Queue.Kinds.BOTH else [task_kind]
        levels.setdefault(priority, []).extend((queue_id, k) for k in kinds if kind is None or k == kind)
    return [lists for lists in levels.values() if lists]


def _candidate_tasks(*, labeler, queue_id: int, kind: str, now) -> QuerySet[Task]:
    """One list's tasks this labeler may take, in order; read from the index task_open_in_order.

    The labeler's own labels are left out with NOT IN over their task ids, which PostgreSQL hashes once
    (from the index assignment_labeler_status), so the tasks they labeled that are still open cost a
    hash lookup each while the index is read, and the live leases are counted only for the task taken.
    """
    done_by_me = Assignment.objects.filter(
        labeler=labeler, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
    ).values("task_id")
    live = (
        Assignment.objects.filter(_live_lease(now), task=OuterRef("pk"))
        .order_by()
        .values("task")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        # The index's condition, word for word, so that the planner reads the index.
        Task.objects.filter(
            queue_id=queue_id, kind=kind, submitted_count__lt=F("overlap"), gold_groups__isnull=True, excluded=False
        )
        .filter(queue__in=queues_open_to(labeler))
        .exclude(pk__in=done_by_me)
        .annotate(live_leases=Coalesce(Subquery(live, output_field=IntegerField()), 0))
        .filter(live_leases__lt=F("overlap") - F("submitted_count"))
        .order_by("-priority", "prompt_id", "pk")
    )


def _first_candidate(*, labeler, levels, now, passed_over: list[int], skip_locked: bool) -> Task | None:
    """The next task of the highest level that has one, locked (FOR UPDATE; SKIP LOCKED unless told not to)."""
    for lists in levels:
        found = [
            _candidate_tasks(labeler=labeler, queue_id=queue_id, kind=kind, now=now)
            .exclude(pk__in=passed_over)
            .select_related("prompt__queue")
            .select_for_update(skip_locked=skip_locked, of=("self",))
            .first()
            for queue_id, kind in lists
        ]
        found = [task for task in found if task is not None]
        if found:
            return min(found, key=lambda task: (-task.priority, task.prompt_id, task.pk))
    return None


def _draw_gold(rate: float) -> bool:
    """True with probability `rate`: hand out a gold task instead of the regular one."""
    return random.random() < rate


def _gold_task(*, labeler, queue: Queue) -> Task | None:
    """A gold task of `queue` this labeler was never given (leased, submitted or skipped), if any."""
    mine = Assignment.objects.filter(task=OuterRef("pk"), labeler=labeler)
    return (
        Task.objects.filter(queue=queue, excluded=False, kind=TaskKind.RANKING, gold_groups__isnull=False)
        .exclude(Exists(mine))
        .select_related("prompt__queue")
        .order_by("-prompt__priority", "pk")
        .first()
    )


def lease_next_task(*, labeler, queue: Queue | None = None, kind: str | None = None) -> Assignment | None:
    """Lease the next task to `labeler` (or return their live lease), or None when nothing is left."""
    attempt = 1
    while True:
        try:
            return _lease_next_task(labeler=labeler, queue=queue, kind=kind)
        except OperationalError as error:
            # Requests that wait for a locked task while holding tasks they passed over can wait on each
            # other; PostgreSQL then aborts one (SQLSTATE 40P01). Its transaction is gone: start it again,
            # unless it is part of the caller's transaction.
            deadlock = getattr(error.__cause__, "sqlstate", None) == "40P01"
            if not deadlock or connection.in_atomic_block or attempt >= DEADLOCK_RETRIES:
                raise
            attempt += 1


def _lease_next_task(*, labeler, queue: Queue | None, kind: str | None) -> Assignment | None:
    now = timezone.now()
    with transaction.atomic():
        # One labeler's requests take turns, so they never take two tasks at once.
        _take_turn(labeler)
        own = Assignment.objects.filter(
            _live_lease(now),
            labeler=labeler,
            task__queue__in=queues_open_to(labeler),
            # An exclusion takes effect at once; the lease is left to lapse (a submit is still taken).
            task__excluded=False,
        ).filter(
            # An overlap lowered under a live lease can leave the task full; then it is not resumed.
            # Gold tasks count against no overlap.
            Q(task__submitted_count__lt=F("task__overlap")) | Q(task__gold_groups__isnull=False)
        )
        if queue is not None:
            own = own.filter(task__queue=queue)
        if kind is not None:
            own = own.filter(task__kind=kind)
        resumed = own.select_related("task__prompt__queue").order_by("leased_at").first()
        if resumed is not None:
            return resumed

        levels = _work_lists(labeler=labeler, queue=queue, kind=kind)
        passed_over: list[int] = []
        skip_locked = True
        for _ in range(MAX_LEASE_ATTEMPTS):
            task = _first_candidate(
                labeler=labeler, levels=levels, now=now, passed_over=passed_over, skip_locked=skip_locked
            )
            if task is None:
                if not skip_locked:
                    return None
                # Every candidate left may be locked for a moment by other labelers' requests: wait for
                # one instead of telling this labeler that nothing is left.
                skip_locked = False
                continue
            # Re-count under the lock: the candidate query's snapshot may predate a commit.
            rows = list(
                Assignment.objects.filter(task=task)
                .filter(Q(status=Assignment.Status.SUBMITTED) | _live_lease(now) | Q(labeler=labeler))
                .only("pk", "labeler_id", "status", "lease_expires_at", "answer_order")
            )
            mine = next((a for a in rows if a.labeler_id == labeler.pk), None)
            taken = sum(1 for a in rows if a.labeler_id != labeler.pk)
            if (mine is None or mine.status == Assignment.Status.LEASED) and taken < task.overlap:
                break
            passed_over.append(task.pk)
        else:
            return None

        queue_ = task.prompt.queue
        if task.kind == TaskKind.RANKING and _draw_gold(queue_.gold_rate):
            gold = _gold_task(labeler=labeler, queue=queue_)
            if gold is not None:
                task, mine = gold, None
        expires = now + timedelta(seconds=queue_.lease_seconds)
        if mine is not None:  # this labeler's own expired lease on the same task: renew it
            mine.leased_at, mine.lease_expires_at = now, expires
            mine.instructions_version = queue_.instructions_version
            mine.save(update_fields=["leased_at", "lease_expires_at", "instructions_version"])
            mine.task = task
            return mine
        order: list[int] = []
        if task.kind == TaskKind.RANKING:
            order = list(Answer.objects.filter(prompt_id=task.prompt_id).values_list("pk", flat=True))
            random.SystemRandom().shuffle(order)
        return Assignment.objects.create(
            task=task,
            labeler=labeler,
            answer_order=order,
            leased_at=now,
            lease_expires_at=expires,
            instructions_version=queue_.instructions_version,
        )


def _lock_for_finishing(*, assignment_id: int, labeler, kind: str) -> Assignment:
    _take_turn(labeler)
    try:
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("task")
            .get(pk=assignment_id, labeler=labeler)
        )
    except (Assignment.DoesNotExist, ValueError, TypeError):
        raise AssignmentError("There is no such task of yours.") from None
    if assignment.task.kind != kind:
        raise AssignmentError(f"This task is not a {kind} task.")
    return assignment


def _claim_slot(assignment: Assignment) -> datetime:
    """Lock the task and count this submission, or raise TaskFull if it is no longer needed.

    Returns the time of the claim, read once the task is locked: a time read before waiting for the
    lock could predate the lease another labeler took on this task after ours expired.
    A gold task's submissions count against no overlap: they are always taken and not counted.
    """
    task = Task.objects.select_for_update().get(pk=assignment.task_id)
    now = timezone.now()
    if task.gold_groups is not None:
        return now
    room = task.overlap - task.submitted_count
    if room <= 0:
        why = "Your lease on this task expired and the" if assignment.lease_expires_at <= now else "The"
        raise TaskFull(
            f"{why} prompt has since received all the labels it needs. "
            "Your answer was not stored; please take the next task."
        )
    if assignment.lease_expires_at <= now:
        # An expired lease keeps no place: the places left belong to the labelers holding live leases.
        if room <= Assignment.objects.filter(_live_lease(now), task=task).exclude(pk=assignment.pk).count():
            raise TaskFull(
                "Your lease on this task expired and other labelers are now working on the places it had left. "
                "Your answer was not stored; please take the next task."
            )
    Task.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
    return now


def _close(assignment: Assignment, status: str, now, time_spent_ms: int | None) -> None:
    elapsed_ms = int((now - assignment.leased_at).total_seconds() * 1000)
    if time_spent_ms is None or time_spent_ms < 0:
        time_spent_ms = elapsed_ms
    assignment.status = status
    assignment.finished_at = now
    assignment.time_spent_ms = max(0, min(int(time_spent_ms), elapsed_ms))
    assignment.save(update_fields=["status", "finished_at", "time_spent_ms", "skip_reason", "skip_note"])


def clean_text(text: str, *, what: str) -> str:
    """Refuse empty, oversized or NUL-containing text (PostgreSQL cannot store NUL).

    Browsers send textarea line breaks as CRLF; they are stored (and counted) as one LF.
    """
    if isinstance(text, str):
        text = text.replace("\r\n", "\n")
    if not isinstance(text, str) or not text.strip():
        raise InvalidLabel(f"The {what} is empty.")
    if "\x00" in text:
        raise InvalidLabel(f"The {what} contains a NUL character.")
    if len(text) > settings.MAX_TEXT_CHARS:
        raise InvalidLabel(f"The {what} is {len(text):,} characters long; the limit is {settings.MAX_TEXT_CHARS:,}.")
    return text


def submit_demonstration(*, assignment_id: int, labeler, text: str, time_spent_ms: int | None = None) -> SubmitResult:
    text = clean_text(text, what="demonstration")
    with transaction.atomic():
        assignment = _lock_for_finishing(assignment_id=assignment_id, labeler=labeler, kind=TaskKind.DEMONSTRATION)
        if assignment.status == Assignment.Status.SUBMITTED:
            return SubmitResult(assignment, already_submitted=True)
        if assignment.status == Assignment.Status.SKIPPED:
            raise AssignmentError("You skipped this task; it cannot be submitted any more.")
        now = _claim_slot(assignment)
        Demonstration.objects.create(assignment=assignment, text=text)
        _close(assignment, Assignment.Status.SUBMITTED, now, time_spent_ms)
    return SubmitResult(assignment, already_submitted=False)


def submit_ranking(
    *,
    assignment_id: int,
    labeler,
    groups: list,
    ratings: dict | None = None,
    flags: dict | None = None,
    time_spent_ms: int | None = None,
) -> SubmitResult:
    with transaction.atomic():
        assignment = _lock_for_finishing(assignment_id=assignment_id, labeler=labeler, kind=TaskKind.RANKING)
        if assignment.status == Assignment.Status.SUBMITTED:
            return SubmitResult(assignment, already_submitted=True)
        if assignment.status == Assignment.Status.SKIPPED:
            raise AssignmentError("You skipped this task; it cannot be submitted any more.")
        answer_ids = list(Answer.objects.filter(prompt__tasks=assignment.task_id).values_list("pk", flat=True))
        try:
            cleaned_groups = clean_groups(groups, answer_ids)
            cleaned_ratings = clean_ratings(ratings or {}, answer_ids)
            cleaned_flags = clean_flags(flags or {}, answer_ids, Flag.values)
        except ValueError as error:
            raise InvalidLabel(str(error)) from None
        now = _claim_slot(assignment)
        ranking = Ranking.objects.create(assignment=assignment, groups=cleaned_groups)
        ranks = ranks_by_answer(cleaned_groups)
        AnswerLabel.objects.bulk_create(
            AnswerLabel(
                ranking=ranking,
                answer_id=answer_id,
                rank=ranks[answer_id],
                rating=cleaned_ratings[answer_id],
                flags=cleaned_flags[answer_id],
            )
            for answer_id in answer_ids
        )
        _close(assignment, Assignment.Status.SUBMITTED, now, time_spent_ms)
    return SubmitResult(assignment, already_submitted=False)


def skip_task(
    *, assignment_id: int, labeler, reason: str, note: str = "", time_spent_ms: int | None = None
) -> Assignment:
    """Record that the labeler will not label this prompt; they are not offered it again."""
    if reason not in SkipReason.values:
        raise InvalidLabel("Choose a reason for skipping.")
    note = (note or "").replace("\r\n", "\n").strip()
    if reason == SkipReason.OTHER and not note:
        raise InvalidLabel("Say why you skip when the reason is 'other'.")
    if len(note) > MAX_SKIP_NOTE_CHARS or "\x00" in note:
        raise InvalidLabel(f"The note must be plain text of at most {MAX_SKIP_NOTE_CHARS} characters.")
    now = timezone.now()
    with transaction.atomic():
        _take_turn(labeler)
        try:
            assignment = Assignment.objects.select_for_update().get(pk=assignment_id, labeler=labeler)
        except (Assignment.DoesNotExist, ValueError, TypeError):
            raise AssignmentError("There is no such task of yours.") from None
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment
        if assignment.status == Assignment.Status.SUBMITTED:
            raise AssignmentError("This task is already submitted; it cannot be skipped.")
        assignment.skip_reason, assignment.skip_note = reason, note
        _close(assignment, Assignment.Status.SKIPPED, now, time_spent_ms)
    return assignment


def sync_tasks(queue: Queue) -> int:
    """Create the tasks the queue's kinds call for and apply its overlaps; returns tasks created.

    Ranking tasks exist only for prompts with at least two answers. A task's overlap is the queue's
    plus the extra labels asked for that prompt, and never below the labels the task already has.
    """
    created = 0
    with transaction.atomic():
        for kind in queue.kinds:
            overlap = queue.overlap_for(kind)
            prompts = Prompt.objects.filter(queue=queue).exclude(tasks__kind=kind)
            if kind == TaskKind.RANKING:
                prompts = prompts.annotate(n=Count("answers")).filter(n__gte=MIN_RANKED_ANSWERS)
            new = [
                Task(prompt_id=pk, queue=queue, priority=priority, excluded=excluded, kind=kind, overlap=overlap)
                for pk, priority, excluded in prompts.values_list("pk", "priority", "excluded")
            ]
            Task.objects.bulk_create(new, batch_size=1000)
            created += len(new)
            wanted = overlap + F("extra_overlap")
            Task.objects.filter(prompt__queue=queue, kind=kind).exclude(overlap=wanted).update(
                overlap=Greatest(wanted, F("submitted_count"))
            )
    return created

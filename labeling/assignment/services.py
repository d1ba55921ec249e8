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
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest
from django.utils import timezone

from core.text import character_problem, is_short_plain_text, normalize_newlines, short_text

from ..models import (
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
from ..quality import aggregates
from ..ranking import clean_flags, clean_groups, clean_ratings, ranks_by_answer

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


# The ids of the open queues a labeler (both parameters) may work on: listed, in a listed group, or the
# queue lists nobody. Plain SQL, the one statement of the rule: every request that leases a task runs it,
# and the ORM spent ten times longer building the same query than the database running it.
OPEN_QUEUE_IDS = """
    SELECT q.id FROM labeling_queue q
    WHERE q.is_open AND (
        EXISTS (SELECT 1 FROM labeling_queue_labelers m WHERE m.queue_id = q.id AND m.user_id = %s)
        OR EXISTS (SELECT 1 FROM labeling_queue_labeler_groups g
                   JOIN auth_user_groups ug ON ug.group_id = g.group_id WHERE g.queue_id = q.id AND ug.user_id = %s)
        OR NOT (EXISTS (SELECT 1 FROM labeling_queue_labelers m WHERE m.queue_id = q.id)
                OR EXISTS (SELECT 1 FROM labeling_queue_labeler_groups g WHERE g.queue_id = q.id))
    )
"""


def queues_open_to(labeler) -> QuerySet[Queue]:
    """Open queues this labeler may work on (listed, in a listed group, or the queue lists nobody)."""
    return Queue.objects.filter(pk__in=RawSQL(OPEN_QUEUE_IDS, (labeler.pk, labeler.pk)))


def _take_turn(labeler) -> None:
    """Lock the labeler's row, so that one labeler's requests (double clicks, two tabs) take turns.

    Every request that changes an assignment takes it first: renewing an expired lease locks the task
    and then the assignment, the opposite order of a submit, and the two would otherwise deadlock.
    FOR NO KEY UPDATE, not FOR UPDATE: it still makes the labeler's requests take turns, but lets other
    transactions check foreign keys to the labeler's row meanwhile (KEY SHARE). With FOR UPDATE a submit waited
    for the worker's transaction that stored agreement rows naming the labeler, and at 1,000 labelers submits
    queued behind those for seconds.
    """
    get_user_model().objects.select_for_update(no_key=True).filter(pk=labeler.pk).exists()


def _live_lease(now) -> Q:
    return Q(status=Assignment.Status.LEASED, lease_expires_at__gt=now)


def _work_lists(*, labeler, queue: Queue | None, kind: str | None) -> list[list[tuple[Queue, str]]]:
    """The (queue, task kind) lists this labeler may take tasks from, by queue priority, highest first.

    Lists of queues with the same priority share a level: their tasks compete by task order. A queue
    switched to one kind keeps its tasks of the other kind (they may hold labels); they are left out.
    """
    # A given queue's openness to the labeler, the candidate query checks.
    queues = [queue] if queue is not None else queues_open_to(labeler).order_by("-priority", "pk")
    levels: dict[int, list[tuple[Queue, str]]] = {}
    for queue_ in queues:
        kinds = TaskKind.values if queue_.task_kind == Queue.Kinds.BOTH else [queue_.task_kind]
        levels.setdefault(queue_.priority, []).extend((queue_, k) for k in kinds if kind is None or k == kind)
    return [lists for lists in levels.values() if lists]


# One list's first task that this labeler may take, read from the index task_open_in_order (the index's
# condition is written out word for word, so that the planner uses it). The labeler's own labels are
# left out with NOT IN over their task ids, which PostgreSQL hashes once (from the index
# assignment_labeler_status), so the open tasks they labeled cost a hash lookup each while the index is
# read; live leases are then counted for the one task found.
CANDIDATE = """
    SELECT t.* FROM labeling_task t
    WHERE t.queue_id = %s AND t.kind = %s
      AND t.submitted_count < t.overlap AND t.gold_groups IS NULL AND NOT t.excluded
      AND t.queue_id IN ({open_queues})
      AND t.id NOT IN (SELECT a.task_id FROM labeling_assignment a
                       WHERE a.labeler_id = %s AND a.status IN ('submitted', 'skipped'))
      AND t.id NOT IN ({passed_over})
      AND (SELECT count(*) FROM labeling_assignment l
           WHERE l.task_id = t.id AND l.status = 'leased' AND l.lease_expires_at > %s) < t.overlap - t.submitted_count
    ORDER BY t.priority DESC, t.prompt_id, t.id
    LIMIT 1 {lock}
"""


def candidate_query(*, labeler, queue_id: int, kind: str, now, passed_over=(), lock: str = "") -> tuple[str, list]:
    """The SQL and parameters of CANDIDATE."""
    sql = CANDIDATE.format(open_queues=OPEN_QUEUE_IDS, passed_over=", ".join(["%s"] * len(passed_over)) or "0",
                           lock=lock)  # fmt: skip
    params = [queue_id, kind, labeler.pk, labeler.pk, labeler.pk, *passed_over,
              connection.ops.adapt_datetimefield_value(now)]  # fmt: skip
    return sql, params


def _candidate(*, labeler, queue_id: int, kind: str, now, passed_over: list[int], lock: str) -> Task | None:
    sql, params = candidate_query(labeler=labeler, queue_id=queue_id, kind=kind, now=now, passed_over=passed_over,
                                  lock=lock)  # fmt: skip
    return next(iter(Task.objects.raw(sql, params)), None)


def _first_candidate(*, labeler, levels, now, passed_over: list[int], skip_locked: bool) -> tuple[Task, Queue] | None:
    """The next task of the highest level that has one and its queue, locked (FOR UPDATE, SKIP LOCKED unless
    told not to; SQLite's transactions take the whole database instead)."""
    features = connection.features
    lock = ""
    if features.has_select_for_update:
        lock = "FOR UPDATE OF t" if features.has_select_for_update_of else "FOR UPDATE"
        lock += " SKIP LOCKED" if skip_locked and features.has_select_for_update_skip_locked else ""
    for lists in levels:
        found = [
            (task, queue_)
            for queue_, kind in lists
            if (task := _candidate(labeler=labeler, queue_id=queue_.pk, kind=kind, now=now, passed_over=passed_over,
                                   lock=lock)) is not None  # fmt: skip
        ]
        if found:
            return min(found, key=lambda pair: (-pair[0].priority, pair[0].prompt_id, pair[0].pk))
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


# The labeler's live lease to resume, oldest first. An exclusion takes effect at once (the lease is left to
# lapse; a submit is still taken); an overlap lowered under a live lease can leave the task full, and then
# it is not resumed; gold tasks count against no overlap.
OWN_LIVE_LEASE = """
    SELECT a.* FROM labeling_assignment a JOIN labeling_task t ON t.id = a.task_id
    WHERE a.labeler_id = %s AND a.status = 'leased' AND a.lease_expires_at > %s
      AND t.queue_id IN ({open_queues}) AND NOT t.excluded
      AND (t.submitted_count < t.overlap OR t.gold_groups IS NOT NULL) {only}
    ORDER BY a.leased_at LIMIT 1
"""


def _own_live_lease(*, labeler, queue: Queue | None, kind: str | None, now) -> Assignment | None:
    only, params = "", [labeler.pk, connection.ops.adapt_datetimefield_value(now), labeler.pk, labeler.pk]
    if queue is not None:
        only, params = only + " AND t.queue_id = %s", [*params, queue.pk]
    if kind is not None:
        only, params = only + " AND t.kind = %s", [*params, kind]
    sql = OWN_LIVE_LEASE.format(open_queues=OPEN_QUEUE_IDS, only=only)
    return next(iter(Assignment.objects.raw(sql, params)), None)


def _lease_next_task(*, labeler, queue: Queue | None, kind: str | None) -> Assignment | None:
    now = timezone.now()
    with transaction.atomic():
        # One labeler's requests take turns, so they never take two tasks at once.
        _take_turn(labeler)
        resumed = _own_live_lease(labeler=labeler, queue=queue, kind=kind, now=now)
        if resumed is not None:
            return resumed

        levels = _work_lists(labeler=labeler, queue=queue, kind=kind)
        passed_over: list[int] = []
        skip_locked = True
        for _ in range(MAX_LEASE_ATTEMPTS):
            found = _first_candidate(
                labeler=labeler, levels=levels, now=now, passed_over=passed_over, skip_locked=skip_locked
            )
            if found is None:
                if not skip_locked:
                    return None
                # Every candidate left may be locked for a moment by other labelers' requests: wait for
                # one instead of telling this labeler that nothing is left.
                skip_locked = False
                continue
            task, queue_ = found
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


def _lock_own(*, assignment_id: int, labeler, kind: str | None = None) -> Assignment:
    """The labeler's own assignment (of `kind`, when given), locked for finishing it."""
    _take_turn(labeler)
    try:
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("task")
            .get(pk=assignment_id, labeler=labeler)
        )
    except (Assignment.DoesNotExist, ValueError, TypeError):
        raise AssignmentError("There is no such task of yours.") from None
    if kind is not None and assignment.task.kind != kind:
        raise AssignmentError(f"This task is not a {kind} task.")
    return assignment


def _lock_for_submit(*, assignment_id: int, labeler, kind: str) -> tuple[Assignment, bool]:
    """The labeler's assignment, locked, and whether it is already submitted (a double submit, answered as
    the first one was); a skipped task cannot be submitted."""
    assignment = _lock_own(assignment_id=assignment_id, labeler=labeler, kind=kind)
    if assignment.status == Assignment.Status.SKIPPED:
        raise AssignmentError("You skipped this task; it cannot be submitted any more.")
    return assignment, assignment.status == Assignment.Status.SUBMITTED


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
    """Refuse empty, oversized or unstorable text (core.text.character_problem: NUL, a lone surrogate).

    Browsers send textarea line breaks as CRLF; they are stored (and counted) as one LF.
    """
    if isinstance(text, str):
        text = normalize_newlines(text)
    if not isinstance(text, str) or not text.strip():
        raise InvalidLabel(f"The {what} is empty.")
    if problem := character_problem(text):
        raise InvalidLabel(f"The {what} {problem}.")
    if len(text) > settings.MAX_TEXT_CHARS:
        raise InvalidLabel(f"The {what} is {len(text):,} characters long; the limit is {settings.MAX_TEXT_CHARS:,}.")
    return text


def submit_demonstration(*, assignment_id: int, labeler, text: str, time_spent_ms: int | None = None) -> SubmitResult:
    text = clean_text(text, what="demonstration")
    with transaction.atomic():
        assignment, already_submitted = _lock_for_submit(
            assignment_id=assignment_id, labeler=labeler, kind=TaskKind.DEMONSTRATION
        )
        if already_submitted:
            return SubmitResult(assignment, already_submitted=True)
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
        assignment, already_submitted = _lock_for_submit(
            assignment_id=assignment_id, labeler=labeler, kind=TaskKind.RANKING
        )
        if already_submitted:
            return SubmitResult(assignment, already_submitted=True)
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
        aggregates.ranking_stored(queue_id=assignment.task.queue_id, prompt_id=assignment.task.prompt_id)
    return SubmitResult(assignment, already_submitted=False)


def skip_task(
    *, assignment_id: int, labeler, reason: str, note: str = "", time_spent_ms: int | None = None
) -> Assignment:
    """Record that the labeler will not label this prompt; they are not offered it again."""
    if reason not in SkipReason.values:
        raise InvalidLabel("Choose a reason for skipping.")
    note = short_text(note)
    if reason == SkipReason.OTHER and not note:
        raise InvalidLabel("Say why you skip when the reason is 'other'.")
    if not is_short_plain_text(note, max_chars=MAX_SKIP_NOTE_CHARS):
        raise InvalidLabel(f"The note must be plain text of at most {MAX_SKIP_NOTE_CHARS} characters.")
    now = timezone.now()
    with transaction.atomic():
        assignment = _lock_own(assignment_id=assignment_id, labeler=labeler)
        if assignment.status == Assignment.Status.SKIPPED:
            return assignment
        if assignment.status == Assignment.Status.SUBMITTED:
            raise AssignmentError("This task is already submitted; it cannot be skipped.")
        assignment.skip_reason, assignment.skip_note = reason, note
        _close(assignment, Assignment.Status.SKIPPED, now, time_spent_ms)
        if assignment.task.kind == TaskKind.RANKING:
            aggregates.task_skipped(queue_id=assignment.task.queue_id)
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

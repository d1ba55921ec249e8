"""An admin's decisions about prompts: exclude or include them, ask for more labels, re-queue them,
make them gold items. Each decision is recorded with its reason (PromptAction), for every prompt it
touches, in the same transaction as the change.

- Exclude: the prompt is handed to no labeler from now on and left out of every dataset; its labels
  stay stored (an exclusion can be undone with include).
- Raise overlap: each of the prompt's tasks wants `by` more labels than the queue's overlap.
- Re-queue: the prompt goes to the front of its queue (a priority above every other prompt of the
  queue), and is included again if it was excluded.
- Gold: the prompt's ranking task gets a reference ranking; it is then mixed into every labeler's
  stream at the queue's gold rate and measures them (labeling.quality.gold).
"""
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Max, QuerySet
from django.db.models.functions import Least

from core import audit
from core.text import is_short_plain_text, short_text

from ..models import (
    Answer,
    AnswerLabel,
    Assignment,
    Prompt,
    PromptAction,
    PromptAgreement,
    Queue,
    Ranking,
    Task,
    TaskKind,
)
from ..ranking import RankingError, clean_groups, ranks_by_answer, ranks_from_groups
from .agreement import consensus_ranking, leave_one_out_agreement, pairwise_agreement

MAX_REASON_CHARS = 2000
MAX_OVERLAP = 50  # the most labels a task can ask for, as on the queue form
MAX_OVERLAP_STEP = 10


class ReviewError(ValueError):
    """The decision cannot be taken as asked; the message says why."""


def clean_reason(reason: object) -> str:
    reason = short_text(reason)
    if not reason:
        raise ReviewError("Give a reason; it is recorded with the decision.")
    if not is_short_plain_text(reason, max_chars=MAX_REASON_CHARS):
        raise ReviewError(f"The reason must be plain text of at most {MAX_REASON_CHARS} characters.")
    return reason


def _prompts(queue: Queue, prompt_ids: Iterable) -> list[int]:
    """The ids, checked to be prompts of this queue; the whole request fails on one wrong id."""
    try:
        wanted = sorted({int(pk) for pk in prompt_ids})
    except (TypeError, ValueError):
        raise ReviewError("Prompt ids must be numbers.") from None
    if not wanted:
        raise ReviewError("Select at least one prompt.")
    found = set(Prompt.objects.filter(queue=queue, pk__in=wanted).values_list("pk", flat=True))
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise ReviewError(f"Prompt {missing[0]} is not in queue “{queue.name}”.")
    return wanted


def _record(queue: Queue, prompt_ids: list[int], kind: str, reason: str, user, detail: dict | None = None) -> None:
    """One PromptAction per prompt (the prompt's history), and one audit event for the whole decision."""
    PromptAction.objects.bulk_create(
        PromptAction(prompt_id=pk, kind=kind, reason=reason, detail=detail or {}, user=user) for pk in prompt_ids
    )
    audit.record(actor=user, action=f"prompt.{kind}", target=queue,
                 detail={"prompts": prompt_ids, "reason": reason, **(detail or {})})  # fmt: skip


def exclude_prompts(*, queue: Queue, prompt_ids: Iterable, reason: str, user=None) -> int:
    return _set_excluded(queue, prompt_ids, reason, user, excluded=True)


def include_prompts(*, queue: Queue, prompt_ids: Iterable, reason: str, user=None) -> int:
    return _set_excluded(queue, prompt_ids, reason, user, excluded=False)


def _set_excluded(queue: Queue, prompt_ids: Iterable, reason: str, user, *, excluded: bool) -> int:
    reason = clean_reason(reason)
    with transaction.atomic():
        ids = _prompts(queue, prompt_ids)
        Prompt.objects.filter(pk__in=ids).update(excluded=excluded)
        _record(queue, ids, PromptAction.Kind.EXCLUDE if excluded else PromptAction.Kind.INCLUDE, reason, user)
    return len(ids)


def raise_overlap(*, queue: Queue, prompt_ids: Iterable, by: object, reason: str, user=None) -> int:
    """Ask for `by` more labels on each of the prompts' tasks of the kinds the queue collects now."""
    reason = clean_reason(reason)
    if isinstance(by, bool) or not str(by).isdecimal() or not 1 <= int(by) <= MAX_OVERLAP_STEP:
        raise ReviewError(f"Ask for between 1 and {MAX_OVERLAP_STEP} more labels.")
    by = int(by)
    with transaction.atomic():
        ids = _prompts(queue, prompt_ids)
        tasks = Task.objects.filter(prompt_id__in=ids, kind__in=queue.kinds)
        # The queue's overlap may have changed since the task was made: count from the task's own.
        tasks.update(
            overlap=Least(F("overlap") + by, MAX_OVERLAP),
            extra_overlap=Least(F("extra_overlap") + by, MAX_OVERLAP),
        )
        _record(queue, ids, PromptAction.Kind.RAISE_OVERLAP, reason, user, {"by": by})
    return len(ids)


def requeue_prompts(*, queue: Queue, prompt_ids: Iterable, reason: str, user=None) -> int:
    reason = clean_reason(reason)
    with transaction.atomic():
        Queue.objects.select_for_update().filter(pk=queue.pk).exists()  # two re-queues take turns
        ids = _prompts(queue, prompt_ids)
        others = Prompt.objects.filter(queue=queue).exclude(pk__in=ids).aggregate(top=Max("priority"))["top"]
        front = (others or 0) + 1
        Prompt.objects.filter(pk__in=ids).update(priority=front, excluded=False)
        _record(queue, ids, PromptAction.Kind.REQUEUE, reason, user, {"priority": front})
    return len(ids)


def set_gold(*, queue: Queue, prompt_id: object, groups: object, reason: str, user=None) -> Task:
    """Give the prompt's ranking task the reference ranking `groups` (tie groups of answer ids)."""
    reason = clean_reason(reason)
    with transaction.atomic():
        [pk] = _prompts(queue, [prompt_id])
        task = Task.objects.select_for_update().filter(prompt_id=pk, kind=TaskKind.RANKING).first()
        if task is None:
            raise ReviewError("Only a prompt with answers to rank can be a gold item.")
        try:
            task.gold_groups = clean_groups(groups, task.prompt.answers.values_list("pk", flat=True))
        except RankingError as error:
            raise ReviewError(str(error)) from None
        if len(task.gold_groups) < 2:
            raise ReviewError("A reference ranking that ties every answer measures nothing; order some answers.")
        task.save(update_fields=["gold_groups"])
        _record(queue, [pk], PromptAction.Kind.SET_GOLD, reason, user, {"groups": task.gold_groups})
    return task


def clear_gold(*, queue: Queue, prompt_id: object, reason: str, user=None) -> None:
    reason = clean_reason(reason)
    with transaction.atomic():
        [pk] = _prompts(queue, [prompt_id])
        if not Task.objects.filter(prompt_id=pk, gold_groups__isnull=False).update(gold_groups=None):
            raise ReviewError("This prompt is not a gold item.")
        _record(queue, [pk], PromptAction.Kind.CLEAR_GOLD, reason, user)


# --- What the review pages read.

def review_rows(*, queue: Queue) -> QuerySet:
    """Prompts ranked by two or more labelers, lowest agreement first (prompts whose pairs are all tied, rate
    None, come last), then by prompt id: dicts of prompt_id, rankings, n, rate, from the stored figures
    (labeling.quality.aggregates), read a page at a time along the index prompt_agreement_review."""
    return (
        PromptAgreement.objects.filter(queue=queue, rankings__gte=2)
        .order_by(F("rate").asc(nulls_last=True), "prompt")
        .values("prompt_id", "rankings", "n", "rate")
    )


def attach_prompts(rows: list[dict]) -> list[dict]:
    """Add each row's prompt (text, exclusion, gold, extra labels) in one query, for one page of rows."""
    tasks = Task.objects.filter(prompt_id__in=[row["prompt_id"] for row in rows], kind=TaskKind.RANKING)
    by_prompt = {task.prompt_id: task for task in tasks.select_related("prompt")}
    return [{**row, "task": by_prompt[row["prompt_id"]]} for row in rows if row["prompt_id"] in by_prompt]


@dataclass(frozen=True)
class RankingColumn:
    ranking: Ranking
    username: str
    agreement: float | None  # with the consensus of the other labelers of this prompt
    pairs: int


@dataclass(frozen=True)
class PromptReview:
    prompt: Prompt
    task: Task | None
    answers: list[Answer]
    columns: list[RankingColumn]
    rows: list[tuple[Answer, list[dict], dict | None, dict | None]]  # answer, cells, consensus, gold
    consensus: list[list[int]] | None
    agreement: float | None  # pooled pairwise agreement over this prompt's labeler pairs
    pairs: int
    skips: list[Assignment]
    actions: list[PromptAction]


def prompt_review(*, queue: Queue, prompt_id: int) -> PromptReview:
    """Every labeler's ranking of one prompt side by side, with the consensus and the gold reference."""
    prompt = Prompt.objects.get(queue=queue, pk=prompt_id)
    answers = list(prompt.answers.all())
    ids = [answer.pk for answer in answers]
    task = Task.objects.filter(prompt=prompt, kind=TaskKind.RANKING).first()
    rankings = list(
        Ranking.objects.filter(assignment__task__prompt=prompt, assignment__status=Assignment.Status.SUBMITTED)
        .select_related("assignment__labeler")
        .prefetch_related("answer_labels")
        .order_by("assignment__labeler__username")
    )
    consensus = consensus_ranking([r.groups for r in rankings]) if len(rankings) >= 2 else None
    loo = leave_one_out_agreement({r.pk: r.groups for r in rankings}, ids)
    columns = [
        RankingColumn(r, r.assignment.labeler.username, *loo.get(r.pk, (None, 0))) for r in rankings
    ]
    agree = pairs = 0
    vectors = [ranks_from_groups(r.groups, ids) for r in rankings]
    for i, first in enumerate(vectors):
        for second in vectors[i + 1:]:
            rate, n = pairwise_agreement(first, second)
            agree, pairs = agree + (rate or 0) * n, pairs + n
    labels = [{label.answer_id: label for label in r.answer_labels.all()} for r in rankings]
    gold = task.gold_groups if task is not None else None
    rows = []
    for answer in answers:
        cells = [_rank_cell(ranks_by_answer(r.groups)[answer.pk], len(ids), by_answer.get(answer.pk))
                 for r, by_answer in zip(rankings, labels, strict=True)]
        rows.append((
            answer,
            cells,
            None if consensus is None else _rank_cell(ranks_by_answer(consensus)[answer.pk], len(ids)),
            None if gold is None else _rank_cell(ranks_by_answer(gold).get(answer.pk, 0), len(ids)),
        ))
    skips = list(
        Assignment.objects.filter(task__prompt=prompt, status=Assignment.Status.SKIPPED).select_related("labeler")
    )
    return PromptReview(
        prompt=prompt, task=task, answers=answers, columns=columns, rows=rows, consensus=consensus,
        agreement=round(agree) / pairs if pairs else None, pairs=pairs, skips=skips,
        actions=list(prompt.actions.select_related("user")[:50]),
    )


def _rank_cell(rank: int, answers: int, label: AnswerLabel | None = None) -> dict:
    """A rank with its colour, a hue step of static/css/app.css (a class: the CSP allows no style attributes):
    12 (green) for the best, 0 (red) for the worst."""
    share = (rank - 1) / max(answers - 1, 1)
    return {
        "rank": rank,
        "hue": round(min(max(1 - share, 0), 1) * 12),
        "rating": label.rating if label else None,
        "flags": label.flags if label else [],
    }

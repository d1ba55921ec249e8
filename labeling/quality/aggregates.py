"""Stored agreement figures: each prompt's counts and their sums per labeler pair, per labeler and per queue,
kept up to date by the worker as rankings arrive, so the admin pages read a few rows instead of computing
labeling.quality.report.queue_agreement from every label on each request (docs/agreement.md, "Stored figures").

- A stored ranking (labeling.assignment.services.submit_ranking, which the pages and the API call) puts its prompt
  in the queue's backlog (AgreementBacklog), in the same transaction, and once committed wakes the worker, at most once
  per AGREEMENT_BACKLOG_SECONDS per queue. The worker takes the backlog in batches: it counts each prompt again
  from its labels (a prompt has a few rankings: a fixed cost) and adds the differences to the pair, labeler and
  queue sums in place (`x = x + delta`), so two workers never lose a count. A wake lost with the broker is
  made up for by beat (count_all_backlogs, every minute); the backlog itself is never lost.
  Gold items and excluded prompts count like any other prompt on these pages, so those decisions change nothing.
- The bootstrap intervals need every prompt, and the labeler table's skips and median seconds and the queue list's
  labels per day, median seconds and skip rate (QueueWork) every finished task: they are drawn again from the
  stored per-prompt counts at most once every AGREEMENT_INTERVALS_SECONDS per queue (or DRAW_SPACING times the
  last draw's duration, if longer), that long after the first ranking counted since the last draw (or after the
  queue list saw the queue's task counters move: labeling.queues.selectors.queue_dashboard).
- rebuild_queue_agreement counts a queue from scratch (`manage.py rebuild_agreement`); the first ranking of a
  queue that has no stored figures yet (a new queue, or one labeled before migration 0013) has it done.

Concurrency (PostgreSQL): a prompt's rows are changed under its Prompt row lock; every update takes a shared
advisory lock per queue and a rebuild the exclusive one, so a rebuild never interleaves with an update (one that
waited recounts its prompt against the rebuilt rows, which then changes nothing). Rows are locked in one order
(prompt, pairs, labelers, queue), so concurrent updates cannot deadlock.
"""
import logging
import time

import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from ..models import (
    AgreementBacklog,
    Assignment,
    LabelerAgreement,
    LabelerPairAgreement,
    Prompt,
    PromptAgreement,
    PromptLabelerAgreement,
    Queue,
    QueueAgreementTotals,
    QueueWork,
    Task,
    TaskKind,
)
from ..queues.selectors import dashboard_days, day_start
from .report import agreement_intervals, prompt_contributions
from .selectors import ranking_label_chunks, ranking_labels

log = logging.getLogger(__name__)

# The intervals of the agreement page and the queue list: as queue_agreement draws them by default.
AGREEMENT_RESAMPLES = 1000
AGREEMENT_SEED = 0
# Between two draws of a queue's intervals, at least this many times as long as the last draw took.
DRAW_SPACING = 5
# A draw that was due this long ago and never ran (its message lost) no longer holds the next one back.
_LOST_DRAW_SECONDS = 3600
_ADVISORY_LOCK_CLASS = 0x61677265  # "agre": the first key of the per-queue advisory lock


# Prompts counted again per transaction of the worker.
BACKLOG_BATCH = 500
# A wake whose message was lost no longer holds the next one back after this long (beat also counts meanwhile).
_LOST_WAKE_SECONDS = 120


def ranking_stored(*, queue_id: int, prompt_id: int) -> None:
    """Called in the transaction that stores a ranking: its prompt joins the backlog, and the worker is woken once
    the transaction commits."""
    AgreementBacklog.objects.create(prompt_id=prompt_id, queue_id=queue_id)
    transaction.on_commit(lambda: wake_worker(queue_id=queue_id))


def _wake_key(queue_id: int) -> str:
    return f"agreement-backlog-wake:{queue_id}"


def wake_worker(*, queue_id: int) -> None:
    """Have the queue's backlog counted AGREEMENT_BACKLOG_SECONDS from now, unless a count is already due: the
    rankings stored meanwhile are counted together, by one task, instead of one task each."""
    from ..tasks import count_backlog_task  # here: the tasks module imports this one

    if cache.add(_wake_key(queue_id), True, timeout=_LOST_WAKE_SECONDS):
        try:
            count_backlog_task.apply_async((queue_id,), countdown=settings.AGREEMENT_BACKLOG_SECONDS)
        except Exception:  # the broker is down: the backlog waits for beat, or for the next ranking's wake
            cache.delete(_wake_key(queue_id))
            log.exception("could not wake the worker for the agreement backlog of queue %s", queue_id)


def count_backlog(*, queue_id: int, batch: int = BACKLOG_BATCH) -> int:
    """Count the queue's backlog of prompts again, `batch` prompts per transaction; then have the intervals drawn
    in a while. A queue without stored figures is counted from scratch instead. Returns the prompts counted."""
    cache.delete(_wake_key(queue_id))  # rankings stored from now on wake the worker again
    if not QueueAgreementTotals.objects.filter(queue_id=queue_id).exists():
        if Queue.objects.filter(pk=queue_id).exists():
            rebuild_queue_agreement(queue_id=queue_id)
        return 0
    counted = 0
    while True:
        with transaction.atomic():
            _lock_queue(queue_id, exclusive=False)
            # SKIP LOCKED: two workers on one queue take different rows (a prompt in both is counted twice: no harm).
            rows = list(AgreementBacklog.objects.select_for_update(skip_locked=True).filter(queue_id=queue_id)
                        .order_by("id").values_list("id", "prompt_id")[:batch])  # fmt: skip
            if not rows:
                break
            AgreementBacklog.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
            prompt_ids = sorted({prompt_id for _, prompt_id in rows})
            _recount_prompts(queue_id, prompt_ids)
        counted += len(prompt_ids)
    if counted:
        schedule_intervals(queue_id=queue_id)
    return counted


def count_all_backlogs() -> int:
    """Every queue's backlog (beat, each minute): what a lost wake left behind."""
    queue_ids = AgreementBacklog.objects.order_by("queue_id").values_list("queue_id", flat=True).distinct()
    return sum(count_backlog(queue_id=queue_id) for queue_id in list(queue_ids))


def refresh_prompt_agreement(*, prompt_id: int) -> None:
    """Count one prompt's rankings again at once and move the queue's sums by the difference; then have the
    intervals drawn again in a while. A queue without stored figures is counted from scratch instead."""
    queue_id = Prompt.objects.filter(pk=prompt_id).values_list("queue_id", flat=True).first()
    if queue_id is None:
        return  # the prompt was deleted since, and its rows with it
    if not QueueAgreementTotals.objects.filter(queue_id=queue_id).exists():
        rebuild_queue_agreement(queue_id=queue_id)
    else:
        with transaction.atomic():
            _lock_queue(queue_id, exclusive=False)
            _recount_prompts(queue_id, [prompt_id])
    schedule_intervals(queue_id=queue_id)


def _recount_prompts(queue_id: int, prompt_ids: list[int]) -> None:
    """Count the prompts again from their labels, store their rows, and add the differences to the sums. In the
    caller's transaction, which holds the queue's shared lock."""
    prompt_ids = sorted(prompt_ids)
    # The prompts' refreshes take turns (rows locked in one order: no deadlock between two batches).
    list(Prompt.objects.select_for_update(no_key=True).filter(pk__in=prompt_ids).order_by("pk").values_list("pk"))
    counts = prompt_contributions(ranking_labels(answer__prompt_id__in=prompt_ids))
    old_prompts = list(PromptAgreement.objects.filter(prompt_id__in=prompt_ids).values("rankings", "agree", "n",
                                                                                      "pairs"))  # fmt: skip
    fields = ("agree", "n", "consensus_agree", "consensus_n")
    old_labelers = PromptLabelerAgreement.objects.filter(prompt_id__in=prompt_ids).values_list("labeler_id", *fields)

    pair_delta: dict[tuple[int, int], list[int]] = {}  # (a, b) -> [prompts, agree, n]
    for old in old_prompts:
        for a, b, agree, n in old["pairs"]:
            delta = pair_delta.setdefault((a, b), [0, 0, 0])
            delta[0], delta[1], delta[2] = delta[0] - 1, delta[1] - agree, delta[2] - n
    for a, b, agree, n in counts.prompt_pairs[["labeler_a", "labeler_b", "agree", "n"]].itertuples(index=False):
        delta = pair_delta.setdefault((int(a), int(b)), [0, 0, 0])
        delta[0], delta[1], delta[2] = delta[0] + 1, delta[1] + int(agree), delta[2] + int(n)
    labeler_delta: dict[int, list[int]] = {}  # labeler -> [rankings, agree, n, consensus_agree, consensus_n]
    for labeler_id, *values in old_labelers:
        delta = labeler_delta.setdefault(labeler_id, [0, 0, 0, 0, 0])
        labeler_delta[labeler_id] = [d - v for d, v in zip(delta, [1, *values], strict=True)]
    new_labelers = []
    for row in counts.prompt_labelers.itertuples(index=False):
        values = [int(getattr(row, f)) for f in fields]
        delta = labeler_delta.setdefault(int(row.labeler_id), [0, 0, 0, 0, 0])
        labeler_delta[int(row.labeler_id)] = [d + v for d, v in zip(delta, [1, *values], strict=True)]
        new_labelers.append(PromptLabelerAgreement(prompt_id=int(row.prompt_id), labeler_id=int(row.labeler_id),
                                                   queue_id=queue_id, **dict(zip(fields, values, strict=True))))

    stored_pairs = {int(prompt_id): frame[["labeler_a", "labeler_b", "agree", "n"]].to_numpy().tolist()
                    for prompt_id, frame in counts.prompt_pairs.groupby("prompt_id")}  # fmt: skip
    new_prompts = [
        PromptAgreement(prompt_id=int(row.prompt_id), queue_id=queue_id, rankings=int(row.rankings),
                        agree=int(row.agree), n=int(row.n), rate=int(row.agree) / int(row.n) if row.n else None,
                        pairs=stored_pairs.get(int(row.prompt_id), []))
        for row in counts.prompts.itertuples(index=False)
    ]  # fmt: skip
    PromptLabelerAgreement.objects.filter(prompt_id__in=prompt_ids).delete()
    PromptLabelerAgreement.objects.bulk_create(new_labelers)
    PromptAgreement.objects.filter(prompt_id__in=prompt_ids).delete()
    PromptAgreement.objects.bulk_create(new_prompts)

    _add(LabelerPairAgreement, ("queue_id", "labeler_a_id", "labeler_b_id"), ("prompts", "agree", "n"),
         [(queue_id, a, b, *delta) for (a, b), delta in sorted(pair_delta.items()) if any(delta)])
    _add(LabelerAgreement, ("queue_id", "labeler_id"), ("rankings", *fields),
         [(queue_id, labeler, *delta) for labeler, delta in sorted(labeler_delta.items()) if any(delta)])
    QueueAgreementTotals.objects.filter(queue_id=queue_id).update(
        agree=F("agree") + sum(p.agree for p in new_prompts) - sum(p["agree"] for p in old_prompts),
        n=F("n") + sum(p.n for p in new_prompts) - sum(p["n"] for p in old_prompts),
        prompts=F("prompts") + sum(p.rankings >= 2 for p in new_prompts) - sum(p["rankings"] >= 2 for p in old_prompts),
        counted_at=timezone.now(),
    )


def _add(model, keys: tuple[str, ...], counters: tuple[str, ...], rows: list[tuple]) -> None:
    """Add each row's counters to the stored row with its keys, creating it at zero first: one upsert that
    adds in place (`x = x + excluded.x`), so concurrent updates of one row both count. Rows come sorted."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in (*keys, *counters))
    values = ", ".join(["(" + ", ".join(["%s"] * (len(keys) + len(counters))) + ")"] * len(rows))
    adds = ", ".join(f"{connection.ops.quote_name(c)} = {table}.{connection.ops.quote_name(c)} + excluded."
                     f"{connection.ops.quote_name(c)}" for c in counters)  # fmt: skip
    conflict = ", ".join(connection.ops.quote_name(c) for c in keys)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT ({conflict}) DO UPDATE SET {adds}",
                       [value for row in rows for value in row])


def _lock_queue(queue_id: int, *, exclusive: bool) -> None:
    """Updates of a queue's figures share this lock; a rebuild holds it alone. Until the transaction ends."""
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer at a time anyway
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_ADVISORY_LOCK_CLASS, queue_id])


def rebuild_queue_agreement(*, queue_id: int, chunk_prompts: int = 5_000) -> QueueAgreementTotals:
    """Count every prompt of the queue from its labels again (after migration 0013, or to repair), in chunks of
    `chunk_prompts` prompts so that memory stays bounded; then draw the intervals."""
    queue = Queue.objects.get(pk=queue_id)
    with transaction.atomic():
        _lock_queue(queue_id, exclusive=True)
        # Its backlog too: every ranking committed so far is counted below (one committed later adds its row again).
        for model in (AgreementBacklog, PromptLabelerAgreement, PromptAgreement, LabelerPairAgreement,
                      LabelerAgreement):
            model.objects.filter(queue_id=queue_id).delete()
        pairs, labelers = [], []
        for labels in ranking_label_chunks(queue, chunk_prompts=chunk_prompts):
            counts = prompt_contributions(labels)
            by_prompt = counts.prompt_pairs.groupby("prompt_id")
            stored_pairs = {
                prompt_id: frame[["labeler_a", "labeler_b", "agree", "n"]].to_numpy().tolist()
                for prompt_id, frame in by_prompt
            }
            PromptAgreement.objects.bulk_create(
                (PromptAgreement(prompt_id=int(row.prompt_id), queue_id=queue_id, rankings=int(row.rankings),
                                 agree=int(row.agree), n=int(row.n), rate=row.agree / row.n if row.n else None,
                                 pairs=stored_pairs.get(row.prompt_id, []))
                 for row in counts.prompts.itertuples()),
                batch_size=2_000,
            )  # fmt: skip
            PromptLabelerAgreement.objects.bulk_create(
                (PromptLabelerAgreement(prompt_id=int(row.prompt_id), labeler_id=int(row.labeler_id), queue_id=queue_id,
                                        agree=int(row.agree), n=int(row.n), consensus_agree=int(row.consensus_agree),
                                        consensus_n=int(row.consensus_n))
                 for row in counts.prompt_labelers.itertuples()),
                batch_size=2_000,
            )  # fmt: skip
            pairs.append(counts.prompt_pairs.assign(prompts=1).groupby(["labeler_a", "labeler_b"])[
                ["prompts", "agree", "n"]].sum())
            labelers.append(counts.prompt_labelers.assign(rankings=1).groupby("labeler_id")[
                ["rankings", "agree", "n", "consensus_agree", "consensus_n"]].sum())
        if pairs:
            LabelerPairAgreement.objects.bulk_create(
                LabelerPairAgreement(queue_id=queue_id, labeler_a_id=int(a), labeler_b_id=int(b),
                                     prompts=int(row.prompts), agree=int(row.agree), n=int(row.n))
                for (a, b), row in pd.concat(pairs).groupby(level=[0, 1]).sum().iterrows()
            )  # fmt: skip
        if labelers:
            LabelerAgreement.objects.bulk_create(
                LabelerAgreement(queue_id=queue_id, labeler_id=int(labeler), rankings=int(row.rankings),
                                 agree=int(row.agree), n=int(row.n), consensus_agree=int(row.consensus_agree),
                                 consensus_n=int(row.consensus_n))
                for labeler, row in pd.concat(labelers).groupby(level=0).sum().iterrows()
            )  # fmt: skip
        sums = PromptAgreement.objects.filter(queue_id=queue_id).aggregate(
            agree=Coalesce(Sum("agree"), 0), n=Coalesce(Sum("n"), 0), prompts=Count("pk", filter=Q(rankings__gte=2)))
        now = timezone.now()
        totals, _ = QueueAgreementTotals.objects.update_or_create(
            queue_id=queue_id, defaults={**sums, "counted_at": now, "rebuilt_at": now})
    refresh_intervals(queue_id=queue_id)
    totals.refresh_from_db()
    return totals


def _intervals_key(queue_id: int) -> str:
    return f"agreement-intervals-due:{queue_id}"


def schedule_intervals(*, queue_id: int) -> None:
    """Have the intervals drawn AGREEMENT_INTERVALS_SECONDS from now, unless a draw is already due: every
    ranking counted before the draw starts is in it, and at most one draw per queue waits at a time."""
    from ..tasks import refresh_agreement_intervals_task  # here: the tasks module imports this one

    if cache.add(_intervals_key(queue_id), True, timeout=_LOST_DRAW_SECONDS):
        last = QueueAgreementTotals.objects.filter(queue_id=queue_id).values_list("intervals_seconds", flat=True)
        # A draw that takes long (two minutes at a million prompts) waits longer, so the worker is not drawing all day.
        seconds = max(settings.AGREEMENT_INTERVALS_SECONDS, DRAW_SPACING * (last.first() or 0))
        try:
            refresh_agreement_intervals_task.apply_async((queue_id,), countdown=seconds)
        except Exception:
            cache.delete(_intervals_key(queue_id))
            log.exception("could not send the agreement intervals of queue %s", queue_id)


def refresh_intervals(*, queue_id: int) -> None:
    """Draw the queue's and its labelers' bootstrap intervals again from the stored per-prompt counts: the
    intervals queue_agreement draws from the labels, with the same seed; and count the queue's work (count_work)."""
    cache.delete(_intervals_key(queue_id))  # rankings counted from now on schedule the next draw
    started = time.perf_counter()
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction and connection.vendor == "postgresql":  # both reads from one snapshot, while updates go on
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        prompts = _frame(PromptAgreement.objects.filter(queue_id=queue_id, n__gt=0).order_by("prompt_id"),
                         ["prompt_id", "agree", "n"])
        prompt_labelers = _frame(
            PromptLabelerAgreement.objects.filter(queue_id=queue_id, n__gt=0).order_by("prompt_id", "labeler_id"),
            ["prompt_id", "labeler_id", "agree", "n"],
        )
        work, queue_work = count_work(queue_id=queue_id)
    low, high, labelers = agreement_intervals(prompts, prompt_labelers, resamples=AGREEMENT_RESAMPLES,
                                              seed=AGREEMENT_SEED)
    drawn = {int(row.labeler_id): row for row in labelers.itertuples() if not pd.isna(row.rate_ci_low)}
    QueueWork.objects.bulk_create([queue_work], update_conflicts=True, unique_fields=["queue"], update_fields=[
        field.name for field in QueueWork._meta.concrete_fields if not field.primary_key])
    with transaction.atomic():  # a row for each labeler who only skipped, committed before the rows are locked
        _lock_queue(queue_id, exclusive=False)  # not while a rebuild deletes and makes them
        LabelerAgreement.objects.bulk_create(
            [LabelerAgreement(queue_id=queue_id, labeler_id=labeler) for labeler in sorted(work)],
            ignore_conflicts=True,
        )
    with transaction.atomic():
        _lock_queue(queue_id, exclusive=False)
        # Labeler rows, then the queue's: the order every update locks them in.
        rows = list(LabelerAgreement.objects.select_for_update().filter(queue_id=queue_id).order_by("labeler_id"))
        for row in rows:
            row.ci_low, row.ci_high = (
                (float(drawn[row.labeler_id].rate_ci_low), float(drawn[row.labeler_id].rate_ci_high))
                if row.labeler_id in drawn else (None, None)
            )
            row.skips, row.median_ms = work.get(row.labeler_id, (0, None))
        LabelerAgreement.objects.bulk_update(rows, ["ci_low", "ci_high", "skips", "median_ms"], batch_size=1_000)
        QueueAgreementTotals.objects.filter(queue_id=queue_id).update(
            ci_low=low, ci_high=high, intervals_at=timezone.now(), intervals_n=int(prompts["n"].sum()),
            intervals_seconds=time.perf_counter() - started)


def count_work(*, queue_id: int) -> tuple[dict[int, tuple[int, float | None]], QueueWork]:
    """The queue's finished work, from every assignment: per labeler of its ranking tasks (skips, median milliseconds
    per submitted ranking), for the labeler table; and for the queue list, over every task kind, a QueueWork (unsaved)
    with the figures labeling.queues.selectors.queue_dashboard computed from the assignments before, drawn now. In the
    caller's transaction (a snapshot, in refresh_intervals)."""
    now = timezone.now()
    finished = Assignment.objects.filter(task__queue_id=queue_id).exclude(status=Assignment.Status.LEASED)
    columns = ["labeler_id", "status", "time_spent_ms", "kind", "regular"]
    regular = ExpressionWrapper(Q(task__gold_groups__isnull=True, task__excluded=False), output_field=BooleanField())
    sql, params = finished.annotate(kind=F("task__kind"), regular=regular).values_list(*columns).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = pd.DataFrame(cursor.fetchall(), columns=columns)
    submitted = rows["status"] == Assignment.Status.SUBMITTED
    skipped = rows["status"] == Assignment.Status.SKIPPED
    ms = pd.to_numeric(rows["time_spent_ms"]).where(submitted)
    ranking = rows["kind"] == TaskKind.RANKING
    per_labeler = pd.DataFrame({"labeler_id": rows["labeler_id"], "skipped": skipped, "ms": ms})[ranking].groupby(
        "labeler_id").agg(skips=("skipped", "sum"), ms=("ms", "median"))
    labelers = {int(labeler): (int(row.skips), None if pd.isna(row.ms) else float(row.ms))
                for labeler, row in per_labeler.iterrows()}

    # The labels counted per kind against the tasks' counters, which the queue list reads live.
    labels = rows[submitted & rows["regular"].astype(bool)].groupby("kind").size()
    tasks = Task.objects.filter(queue_id=queue_id)
    counted = dict(tasks.filter(gold_groups__isnull=True, excluded=False).values("kind").annotate(
        n=Sum("submitted_count")).values_list("kind", "n"))  # fmt: skip
    uncounted = {kind: int(labels.get(kind, 0)) - int(counted.get(kind, 0))
                 for kind in sorted({*labels.index, *counted})}
    days = dashboard_days(now)
    per_day = dict(
        finished.filter(status=Assignment.Status.SUBMITTED, finished_at__gte=day_start(days[0]))
        .annotate(day=TruncDate("finished_at")).values("day").annotate(n=Count("pk")).values_list("day", "n")
    )  # fmt: skip
    median = ms.median()
    work = QueueWork(
        queue_id=queue_id, finished=len(rows), skipped=int(skipped.sum()),
        median_ms=None if pd.isna(median) else float(median),
        labels_per_day={day.isoformat(): per_day.get(day, 0) for day in days},
        submitted_count=tasks.aggregate(n=Coalesce(Sum("submitted_count"), 0))["n"],
        uncounted_labels={kind: n for kind, n in uncounted.items() if n}, drawn_at=now,
    )  # fmt: skip
    return labelers, work


def task_skipped(*, queue_id: int) -> None:
    """Called in the transaction that stores a skip of a ranking task: the next draw counts it."""
    transaction.on_commit(lambda: schedule_intervals(queue_id=queue_id))


def _frame(queryset, columns: list[str]) -> pd.DataFrame:
    """The queryset's columns as int64 arrays, read with one plain cursor (millions of rows in a worker)."""
    sql, params = queryset.values_list(*columns).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return pd.DataFrame(cursor.fetchall(), columns=columns, dtype="int64")

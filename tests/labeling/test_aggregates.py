"""Stored agreement figures (labeling.quality.aggregates): counted ranking by ranking, they equal the report computed
from scratch by labeling.quality.report.queue_agreement; a ranking's prompt joins the backlog with it and the
worker is woken once per batch on commit; concurrent updates of one labeler pair all count."""
import random
import threading
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from labeling import tasks
from labeling.assignment.services import lease_next_task, skip_task, submit_demonstration, submit_ranking
from labeling.models import (
    AgreementBacklog,
    Assignment,
    LabelerPairAgreement,
    Prompt,
    PromptAgreement,
    PromptLabelerAgreement,
    Queue,
    QueueAgreementTotals,
    QueueWork,
    Ranking,
    Task,
)
from labeling.quality import aggregates, review
from labeling.quality.report import queue_agreement
from labeling.quality.selectors import queue_agreement_page, ranking_labels, stored_agreement
from labeling.queues.selectors import dashboard_days, day_start, queue_dashboard
from tests.conftest import make_queue, make_user


def random_groups(rng: random.Random, answer_ids: list[int]) -> list[list[int]]:
    """Tie groups of the answers in a random order, ties drawn often (values from 1..3)."""
    value = {answer: rng.randint(1, 3) for answer in answer_ids}
    return [[a for a in answer_ids if value[a] == v] for v in sorted(set(value.values()))]


def assert_stored_equal_scratch(queue: Queue) -> None:
    """Every stored figure equals queue_agreement's on the queue's labels, with the same seed."""
    scratch = queue_agreement(ranking_labels(answer__prompt__queue=queue), resamples=aggregates.AGREEMENT_RESAMPLES,
                              seed=aggregates.AGREEMENT_SEED)
    stored = stored_agreement(queue=queue)
    assert stored.queue == scratch.queue

    def plain(value):
        return None if value is None or pd.isna(value) else float(value)

    assert [(r.labeler_a, r.labeler_b, r.agree, r.n, plain(r.rate)) for r in stored.pairs.itertuples()] == [
        (r.labeler_a, r.labeler_b, r.agree, r.n, plain(r.rate)) for r in scratch.pairs.itertuples()]
    columns = ["labeler_id", "rankings", "agree", "n", "rate", "rate_ci_low", "rate_ci_high", "consensus_rate",
               "consensus_n"]
    assert [tuple(plain(v) for v in row) for row in stored.labelers[columns].itertuples(index=False)] == [
        tuple(plain(v) for v in row) for row in scratch.labelers[columns].itertuples(index=False)]
    prompts = PromptAgreement.objects.filter(queue=queue).order_by("prompt_id")
    assert [(p.prompt_id, p.rankings, p.agree, p.n, p.rate) for p in prompts] == [
        (r.prompt_id, r.rankings, r.agree, r.n, plain(r.rate)) for r in scratch.prompts.itertuples()]
    # The review list's order: lowest rate first, undefined last, then prompt id.
    shared = scratch.prompts[scratch.prompts["rankings"] >= 2]
    expected = sorted(shared.itertuples(), key=lambda r: (pd.isna(r.rate), 0 if pd.isna(r.rate) else r.rate,
                                                          r.prompt_id))
    assert [row["prompt_id"] for row in review.review_rows(queue=queue)] == [r.prompt_id for r in expected]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_figures_counted_ranking_by_ranking_equal_the_report_from_scratch(db, seed):
    rng = random.Random(seed)
    random.seed(seed)  # gold draws in labeling.assignment.services
    queue = make_queue(f"Random {seed}", prompts=10, answers=rng.randint(2, 5), task_kind=Queue.Kinds.RANKING,
                       ranking_overlap=3, gold_rate=0.3)
    admin = make_user(f"admin{seed}", "admin")
    prompts = list(queue.prompts.order_by("pk"))
    for gold in prompts[:2]:  # gold items' rankings count on these pages like any other
        ids = sorted(gold.answers.values_list("pk", flat=True))
        review.set_gold(queue=queue, prompt_id=gold.pk, groups=[[pk] for pk in ids], reason="check")
    labelers = [make_user(f"r{seed}-{i}", "labeler") for i in range(5)]
    active, submitted = list(labelers), 0
    while active:
        labeler = rng.choice(active)
        assignment = lease_next_task(labeler=labeler, queue=queue)
        if assignment is None:
            active.remove(labeler)
            continue
        submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=random_groups(rng, assignment.answer_order))
        submitted += 1
        if submitted == 8:  # an excluded prompt's rankings stay counted too
            review.exclude_prompts(queue=queue, prompt_ids=[assignment.task.prompt_id], reason="off topic", user=admin)
        if submitted % 5 == 0:
            assert_stored_equal_scratch(queue)
    assert submitted >= 25
    assert_stored_equal_scratch(queue)

    # A ranking taken away (its labeler deleted, say): counting its prompt again takes its share back.
    gone = Ranking.objects.filter(assignment__task__prompt__queue=queue).order_by("?").first()
    prompt_id = gone.assignment.task.prompt_id
    Assignment.objects.filter(pk=gone.assignment_id).delete()
    aggregates.refresh_prompt_agreement(prompt_id=prompt_id)
    assert_stored_equal_scratch(queue)

    before = [(t.agree, t.n, t.prompts, t.ci_low, t.ci_high) for t in QueueAgreementTotals.objects.filter(queue=queue)]
    aggregates.rebuild_queue_agreement(queue_id=queue.pk, chunk_prompts=3)
    assert [(t.agree, t.n, t.prompts, t.ci_low, t.ci_high)
            for t in QueueAgreementTotals.objects.filter(queue=queue)] == before
    assert_stored_equal_scratch(queue)


def test_a_queue_without_stored_figures_is_counted_at_its_next_ranking(db):
    queue = make_queue("Old", prompts=3, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    ana, ben = make_user("ana", "labeler"), make_user("ben", "labeler")
    for user in (ana, ben):
        assignment = lease_next_task(labeler=user, queue=queue)
        submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in assignment.answer_order])
    # As after migration 0013: labels, and no stored figures.
    for model in (QueueAgreementTotals, PromptAgreement, PromptLabelerAgreement, LabelerPairAgreement):
        model.objects.all().delete()
    assert stored_agreement(queue=queue).queue.n == 0
    assignment = lease_next_task(labeler=ana, queue=queue)
    submit_ranking(assignment_id=assignment.pk, labeler=ana, groups=[list(assignment.answer_order)])
    assert stored_agreement(queue=queue).queue.n == 3
    assert_stored_equal_scratch(queue)


@pytest.mark.aggregates_on_commit
def test_committed_submits_wake_the_worker_once_and_it_counts_them_in_one_batch(
        db, monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.AGREEMENT_INTERVALS_SECONDS, settings.AGREEMENT_BACKLOG_SECONDS = 30, 2
    woken, intervals = [], []
    monkeypatch.setattr(tasks.count_backlog_task, "apply_async",
                        lambda args, countdown: woken.append((args, countdown)))
    monkeypatch.setattr(tasks.refresh_agreement_intervals_task, "apply_async",
                        lambda args, countdown: intervals.append((args, countdown)))
    queue = make_queue("Wired", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    aggregates.rebuild_queue_agreement(queue_id=queue.pk)
    ana, ben = make_user("ana", "labeler"), make_user("ben", "labeler")

    def submit(user):
        assignment = lease_next_task(labeler=user, queue=queue)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            submit_ranking(assignment_id=assignment.pk, labeler=user,
                           groups=[[pk] for pk in sorted(assignment.answer_order)])
        # The prompt waits in the backlog, committed with the ranking; nothing is counted before the commit.
        assert AgreementBacklog.objects.filter(queue=queue, prompt_id=assignment.task.prompt_id).exists()
        for callback in callbacks:
            callback()
        return assignment

    for user in (ana, ben):
        submit(user)
    assert stored_agreement(queue=queue).queue.n == 0
    assert woken == [((queue.pk,), 2)]  # one wake for both rankings
    assert tasks.count_backlog_task(queue.pk) == 1  # what the worker does: the one prompt, counted once
    assert not AgreementBacklog.objects.exists()
    figure = stored_agreement(queue=queue)
    assert (figure.queue.rate, figure.queue.n, figure.queue.prompts) == (1.0, 3, 1)
    # One draw of the intervals is due, 30 s on, however many rankings were counted meanwhile.
    assert intervals == [((queue.pk,), 30)]
    assert figure.queue.ci_low is None and figure.intervals_at < figure.counted_at
    tasks.refresh_agreement_intervals_task(queue.pk)
    assert stored_agreement(queue=queue).intervals_at > figure.counted_at
    # A draw that took 20 s: the next one waits 5 times as long.
    QueueAgreementTotals.objects.filter(queue=queue).update(intervals_seconds=20)
    aggregates.schedule_intervals(queue_id=queue.pk)
    assert intervals[-1] == ((queue.pk,), 100)

    # The broker is down when the next ranking commits: its prompt stays in the backlog, and beat counts it.
    def broker_down(args, countdown):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.count_backlog_task, "apply_async", broker_down)
    later = submit(ana)
    assert list(AgreementBacklog.objects.values_list("prompt_id", flat=True)) == [later.task.prompt_id]
    assert tasks.count_all_backlogs_task() == 1
    assert not AgreementBacklog.objects.exists()
    assert_stored_equal_scratch(queue)


def test_the_review_list_reads_a_page_of_stored_rows(client, db):
    queue = make_queue("Paged", prompts=4, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    users = [make_user(name, "labeler") for name in ("ana", "ben")]
    for user, reverse_order in zip(users, (False, True), strict=True):
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            submit_ranking(assignment_id=assignment.pk, labeler=user,
                           groups=[[pk] for pk in sorted(assignment.answer_order, reverse=reverse_order)])
    client.force_login(make_user("boss", "admin"))
    response = client.get(reverse("manage-review", args=[queue.pk]))
    assert response.status_code == 200
    assert [row["rate"] for row in response.context["rows"]] == [0.0] * 4


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: row locks and concurrent writers")
def test_concurrent_updates_of_one_labeler_pair_all_count(transactional_db):
    prompts, per_thread = 12, 3
    queue = make_queue("Together", prompts=prompts, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    ana, ben = make_user("ana", "labeler"), make_user("ben", "labeler")
    aggregates.rebuild_queue_agreement(queue_id=queue.pk)
    with pytest.MonkeyPatch.context() as patch:  # store the labels without counting them
        patch.setattr(aggregates, "ranking_stored", lambda **_: None)
        for user in (ana, ben):
            while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
                groups = [[pk] for pk in sorted(assignment.answer_order)]
                submit_ranking(assignment_id=assignment.pk, labeler=user, groups=groups)
    prompt_ids = list(queue.prompts.order_by("pk").values_list("pk", flat=True))
    errors = []

    def count(ids):
        try:
            for prompt_id in ids:
                aggregates.refresh_prompt_agreement(prompt_id=prompt_id)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    # Each prompt counted twice, by different threads at once: every count lands exactly once per prompt.
    chunks = [prompt_ids[i:i + per_thread] for i in range(0, prompts, per_thread)] * 2
    threads = [threading.Thread(target=count, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    rebuild = threading.Thread(target=lambda: (aggregates.rebuild_queue_agreement(queue_id=queue.pk),
                                               connection.close()))
    rebuild.start()
    for thread in [*threads, rebuild]:
        thread.join()
    assert not errors, errors
    aggregates.refresh_intervals(queue_id=queue.pk)  # in tests every count draws at once, not the last one
    pair = LabelerPairAgreement.objects.get(queue=queue)
    assert (pair.prompts, pair.agree, pair.n) == (prompts, 3 * prompts, 3 * prompts)
    assert_stored_equal_scratch(queue)


def test_the_labeler_table_reads_skips_and_median_seconds_drawn_with_the_intervals(db):
    queue = make_queue("Work", prompts=3, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    ana, ben = make_user("ana", "labeler"), make_user("ben", "labeler")
    for seconds in (10, 30):
        assignment = lease_next_task(labeler=ana, queue=queue)
        submit_ranking(assignment_id=assignment.pk, labeler=ana, groups=[list(assignment.answer_order)])
        Assignment.objects.filter(pk=assignment.pk).update(time_spent_ms=seconds * 1000)
    # The skip has the next draw count it (at once in tests), and the times above with it.
    skip_task(assignment_id=lease_next_task(labeler=ben, queue=queue).pk, labeler=ben, reason="unclear")
    rows = {row["username"]: row for row in queue_agreement_page(queue=queue).labelers}
    assert (rows["ana"]["tasks"], rows["ana"]["skips"], rows["ana"]["median_seconds"]) == (2, 0, 20.0)
    assert (rows["ben"]["tasks"], rows["ben"]["skips"], rows["ben"]["skip_rate"]) == (0, 1, 1.0)
    assert rows["ben"]["median_seconds"] is None and rows["ben"]["rate"] is None


def queue_list_from_scratch(queue: Queue, now) -> dict:
    """The queue list's figures of one queue as queue_dashboard computed them from every task and assignment before
    they were stored (a join of tasks and assignments, and every finished assignment read)."""
    live = Assignment.objects.filter(task=OuterRef("pk"), status=Assignment.Status.LEASED, lease_expires_at__gt=now)
    progress = {
        row["kind"]: (row["tasks"], row["complete"], row["started"] - row["complete"], row["tasks"] - row["started"],
                      row["labels"])
        for row in Task.objects.filter(prompt__queue=queue, gold_groups__isnull=True, prompt__excluded=False)
        .annotate(leased=Exists(live)).values("kind").annotate(
            tasks=Count("pk", distinct=True),
            complete=Count("pk", distinct=True, filter=Q(submitted_count__gte=F("overlap"))),
            started=Count("pk", distinct=True, filter=Q(submitted_count__gt=0) | Q(leased=True)),
            labels=Count("assignments", filter=Q(assignments__status=Assignment.Status.SUBMITTED)))
    }  # fmt: skip
    days = dashboard_days(now)
    per_day = dict(
        Assignment.objects.filter(task__prompt__queue=queue, status=Assignment.Status.SUBMITTED,
                                  finished_at__gte=day_start(days[0]))
        .annotate(day=TruncDate("finished_at")).values("day").annotate(n=Count("pk")).values_list("day", "n"))
    finished = pd.DataFrame.from_records(
        Assignment.objects.filter(task__prompt__queue=queue).exclude(status=Assignment.Status.LEASED)
        .values_list("status", "time_spent_ms"), columns=["status", "ms"])  # fmt: skip
    submitted_ms = pd.to_numeric(finished["ms"]).where(finished["status"] == Assignment.Status.SUBMITTED).median()
    return {
        "progress": [progress.get(kind, (0, 0, 0, 0, 0)) for kind in queue.kinds],
        "excluded": Prompt.objects.filter(queue=queue, excluded=True).count(),
        "gold": Task.objects.filter(prompt__queue=queue, gold_groups__isnull=False).count(),
        "labels_per_day": [per_day.get(day, 0) for day in days],
        "median_seconds": None if pd.isna(submitted_ms) else float(submitted_ms) / 1000,
        "skip_rate": (finished["status"] == Assignment.Status.SKIPPED).sum() / len(finished) if len(finished) else None,
    }


def queue_list_figures(queue: Queue, now) -> dict:
    [summary] = [summary for summary in queue_dashboard(now=now).queues if summary.queue == queue]
    return {
        "progress": [(p.tasks, p.complete, p.in_progress, p.untouched, p.labels) for p in summary.progress],
        "excluded": summary.excluded_prompts, "gold": summary.gold_items, "labels_per_day": summary.labels_per_day,
        "median_seconds": summary.median_seconds, "skip_rate": summary.skip_rate,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_queue_lists_figures_equal_the_ones_counted_from_every_assignment(db, seed):
    """Random work on a queue of both kinds, with gold items (one made regular again after labels), excluded prompts,
    skips, live and lapsed leases, a labeler deleted and times and days spread over 60 days: the live progress always
    equals the count from scratch; labels per day, median seconds and skip rate do once the work is drawn again."""
    rng = random.Random(seed)
    random.seed(seed)  # gold draws in labeling.assignment.services
    queue = make_queue(f"List {seed}", prompts=14, answers=3, task_kind=Queue.Kinds.BOTH, ranking_overlap=2,
                       demonstration_overlap=2, gold_rate=0.3)
    other = make_queue(f"Other {seed}", prompts=2, answers=2, task_kind=Queue.Kinds.RANKING)
    prompts = list(queue.prompts.order_by("pk"))
    for gold in prompts[:3]:
        ids = sorted(gold.answers.values_list("pk", flat=True))
        review.set_gold(queue=queue, prompt_id=gold.pk, groups=[[pk] for pk in ids], reason="check")
    labelers = [make_user(f"l{seed}-{i}", "labeler") for i in range(5)]
    actions = 0
    for _ in range(60):
        labeler = rng.choice(labelers)
        assignment = lease_next_task(labeler=labeler, queue=queue)
        if assignment is None:
            continue
        draw = rng.random()
        if draw < 0.15:
            skip_task(assignment_id=assignment.pk, labeler=labeler, reason="unclear")
        elif draw < 0.25:
            if rng.random() < 0.5:  # a lapsed lease, which does not start a task
                Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(1))
            continue  # else a live lease, which does
        elif assignment.task.kind == "ranking":
            submit_ranking(assignment_id=assignment.pk, labeler=labeler,
                           groups=random_groups(rng, assignment.answer_order))
        else:
            submit_demonstration(assignment_id=assignment.pk, labeler=labeler, text=f"demonstration {actions}")
        actions += 1
        Assignment.objects.filter(pk=assignment.pk).update(
            time_spent_ms=rng.choice([None, rng.randint(1_000, 90_000)]),
            finished_at=timezone.now() - timedelta(days=rng.uniform(0, 60)))
        if actions == 10:
            review.exclude_prompts(queue=queue, prompt_ids=[prompts[5].pk, prompts[6].pk], reason="off topic")
        now = timezone.now()
        live, scratch = queue_list_figures(queue, now), queue_list_from_scratch(queue, now)
        assert live["progress"] == scratch["progress"]
        assert (live["excluded"], live["gold"]) == (scratch["excluded"], scratch["gold"])
    assert actions >= 20
    # A gold item that has labels made a regular prompt again, and a labeler deleted: counters the labels outgrew.
    review.clear_gold(queue=queue, prompt_id=prompts[0].pk, reason="not gold after all")
    labelers[0].delete()
    aggregates.refresh_intervals(queue_id=queue.pk)  # rows edited by hand: drawn again
    assert QueueWork.objects.get(queue=queue).uncounted_labels  # the counters are off, the figures not
    now = timezone.now()
    assert queue_list_figures(queue, now) == queue_list_from_scratch(queue, now)
    assert queue_list_figures(other, now) == queue_list_from_scratch(other, now)
    # A day the draw has not seen: none while nothing was submitted since, unknown once something was.
    tomorrow = now + timedelta(days=1)
    assert queue_list_figures(queue, tomorrow)["labels_per_day"][-1] == 0
    assignment = lease_next_task(labeler=labelers[1], queue=queue, kind="demonstration")
    if assignment is not None:
        submit_demonstration(assignment_id=assignment.pk, labeler=labelers[1], text="one more")
        with pytest.MonkeyPatch.context() as patch:  # the draw the page asks for, a while later in the worker
            patch.setattr(aggregates, "schedule_intervals", lambda *, queue_id: None)
            assert queue_list_figures(queue, tomorrow)["labels_per_day"][-1] is None
        queue_list_figures(queue, now)  # asks for the draw, which tests make at once (after the page read its rows)
        assert queue_list_figures(queue, now) == queue_list_from_scratch(queue, now)

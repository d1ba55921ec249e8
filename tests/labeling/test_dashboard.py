"""The queue list dashboard and the agreement CSV: figures on hand-made queues, bounded queries, who may see them."""
import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.text import csv_cell
from labeling.assignment.selectors import labeler_queues
from labeling.assignment.services import lease_next_task, skip_task, submit_ranking
from labeling.models import Assignment, ImportJob, Prompt, Queue, Task
from labeling.quality import aggregates
from labeling.quality.selectors import queue_agreement_page
from labeling.quality.views import AGREEMENT_CSV_COLUMNS
from labeling.queues.selectors import DASHBOARD_DAYS
from tests.conftest import make_queue, make_user, shows_nan
from tests.labeling.test_agreement_page import rank_queue


def rank_one(user, queue: Queue, *, reverse: bool = False) -> Assignment:
    """Lease the user's next task and rank its answers by position (or in reverse)."""
    assignment = lease_next_task(labeler=user, queue=queue)
    order = sorted(assignment.answer_order, reverse=reverse)
    submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in order])
    return assignment


def make_gold(prompt: Prompt) -> None:
    """Make the prompt's ranking task a gold item, the reference ranking by answer position."""
    ids = sorted(prompt.answers.values_list("pk", flat=True))
    Task.objects.filter(prompt=prompt, kind="ranking").update(gold_groups=[[pk] for pk in ids])


def test_the_queue_list_shows_each_queues_figures(client, queue_admin):
    queue = make_queue("Dash", prompts=7, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    quiet = make_queue("Quiet", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING)
    ana, ben, cy, dan = (make_user(name, "labeler") for name in ("ana", "ben", "cy", "dan"))
    prompts = list(queue.prompts.order_by("pk"))
    # Prompts 0 and 1: ana and ben (ben agrees on 0, reverses 1); prompt 2: ana, a skip by cy, dan's live lease.
    mine = [rank_one(ana, queue) for _ in range(3)]
    theirs = [rank_one(ben, queue), rank_one(ben, queue, reverse=True)]
    skipped = lease_next_task(labeler=cy, queue=queue)
    skip_task(assignment_id=skipped.pk, labeler=cy, reason="unclear")
    assert lease_next_task(labeler=dan, queue=queue).task.prompt == prompts[2]
    # Prompt 3 is a gold item, prompt 4 is excluded: neither is work left to do; 5 and 6 are untouched.
    make_gold(prompts[3])
    Prompt.objects.filter(pk=prompts[4].pk).update(excluded=True)
    # Seconds per submitted task 10..50 (median 30); the skip's time does not count.
    for seconds, assignment in zip([10, 20, 30, 40, 50], mine + theirs, strict=True):
        Assignment.objects.filter(pk=assignment.pk).update(time_spent_ms=seconds * 1000)
    Assignment.objects.filter(pk=skipped.pk).update(time_spent_ms=999_000)
    now = timezone.now()
    Assignment.objects.filter(pk=theirs[1].pk).update(finished_at=now - timedelta(days=1))
    Assignment.objects.filter(pk=mine[0].pk).update(finished_at=now - timedelta(days=DASHBOARD_DAYS + 5))
    # Rows edited by hand are counted at the next draw of the queue's work (a ranking, a skip, rebuild_agreement).
    aggregates.refresh_intervals(queue_id=queue.pk)

    client.force_login(queue_admin)
    response = client.get(reverse("manage-queues"))
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    summary, empty = (next(s for s in dashboard.queues if s.queue == q) for q in (queue, quiet))

    [progress] = summary.progress
    assert (progress.tasks, progress.complete, progress.in_progress, progress.untouched) == (5, 2, 1, 2)
    assert progress.labels == 5
    assert (summary.excluded_prompts, summary.gold_items) == (1, 1)
    assert summary.skip_rate == pytest.approx(1 / 6) and summary.median_seconds == 30.0
    assert len(dashboard.days) == DASHBOARD_DAYS and dashboard.days[-1] == timezone.localdate(now)
    assert summary.labels_per_day[-1] == 3 and summary.labels_per_day[-2] == 1 and summary.recent_labels == 4
    # ana and ben agree on the 3 answer pairs of prompt 0 and on none of prompt 1.
    agreement = summary.agreement
    assert (agreement.rate, agreement.n, agreement.prompts) == (0.5, 6, 2)
    assert agreement.ci_low <= 0.5 <= agreement.ci_high
    assert agreement.rate == queue_agreement_page(queue=queue).report.queue.rate

    assert [(p.tasks, p.untouched, p.labels) for p in empty.progress] == [(2, 2, 0)]
    assert empty.agreement.rate is None and empty.skip_rate is None and empty.median_seconds is None
    assert empty.labels_per_day == [0] * DASHBOARD_DAYS

    html = response.content.decode()
    assert "not enough data" in html and 'id="labels-per-day"' in html
    assert response.context["chart"]["queues"][str(queue.pk)] == summary.labels_per_day
    # Chart data travels as JSON; every other script is a static file.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts)


def test_labelers_are_not_offered_gold_or_excluded_prompts_as_work_left(ranking_queue, labeler):
    first, second, _ = ranking_queue.prompts.order_by("pk")
    make_gold(first)
    Prompt.objects.filter(pk=second.pk).update(excluded=True)
    [mine] = labeler_queues(labeler=labeler)
    assert [kind.available for kind in mine.kinds] == [1]


def _dashboard_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("manage-queues")).status_code == 200
    return [q["sql"] for q in queries]


def test_the_queue_list_runs_the_same_queries_whatever_the_numbers(client, queue_admin):
    client.force_login(queue_admin)
    client.get("/")  # the signed-in user is read once, then from the cache (core.roles)
    first = make_queue("Q1", prompts=3, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    rank_queue(first, [make_user(f"a{i}", "labeler") for i in range(2)])
    small = _dashboard_queries(client)

    users = [make_user(f"b{i}", "labeler") for i in range(4)]
    for name in ("Q2", "Q3"):
        queue = make_queue(name, prompts=6, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=3)
        skip = lease_next_task(labeler=users[3], queue=queue)
        skip_task(assignment_id=skip.pk, labeler=users[3], reason="unclear")
        rank_queue(queue, users[:3], reverse_for="b2")
        make_gold(queue.prompts.order_by("pk").first())
        queue.prompts.filter(pk=queue.prompts.order_by("pk").last().pk).update(excluded=True)
    assert Queue.objects.count() == 3 and Prompt.objects.count() == 15
    large = _dashboard_queries(client)
    assert len(large) == len(small), large


@pytest.mark.parametrize("prompts", [4, 16])
def test_the_agreement_page_stays_bounded_with_gold_items(client, queue_admin, prompts):
    queue = make_queue(f"G{prompts}", prompts=prompts, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=3)
    users = [make_user(f"g{prompts}-{i}", "labeler") for i in range(3)]
    rank_queue(queue, users, reverse_for=users[2].username)
    for prompt in queue.prompts.order_by("pk")[:3]:
        make_gold(prompt)
    client.force_login(queue_admin)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("manage-queue-agreement", args=[queue.pk]))
    assert response.status_code == 200
    # Session, user, roles and queue; the stored totals, pairs and labelers, assignments and usernames; at most 2
    # for the gold scores.
    assert len(queries) <= 4 + 5 + 2, [q["sql"][:80] for q in queries]
    rows = {row["username"]: row for row in response.context["page"].labelers}
    # Two labelers rank the 3 gold prompts as the reference does, the third reverses them.
    fine, reverser = rows[users[0].username], rows[users[2].username]
    assert (fine["gold_rate"], fine["gold_prompts"], fine["gold_flagged"]) == (1.0, 3, False)
    assert (reverser["gold_rate"], reverser["gold_prompts"], reverser["gold_flagged"]) == (0.0, 3, True)
    html = response.content.decode()
    assert "Gold accuracy" in html and "below the queue's gold threshold" in html.lower()
    assert 'id="heat-map-chart"' in html and 'id="heat-map-data"' in html and 'id="heat-map"' in html


def test_the_agreement_csv_has_the_pages_figures_and_defuses_formulas(client, queue_admin):
    queue = make_queue("CSV: «export»", prompts=4, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=3)
    users = [make_user(name, "labeler") for name in ("=cmd", "ana", "ben")]
    rank_queue(queue, users, reverse_for="=cmd")
    client.force_login(queue_admin)
    response = client.get(reverse("manage-queue-agreement-csv", args=[queue.pk]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="agreement-{queue.pk}-csv-export.csv"'
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert header == AGREEMENT_CSV_COLUMNS
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [row["username"] for row in table] == ["(queue)", "'=cmd", "ana", "ben"]
    page = queue_agreement_page(queue=queue)
    pooled = table[0]
    assert float(pooled["agreement"]) == pytest.approx(1 / 3) and int(pooled["pairs"]) == page.report.queue.n
    assert float(pooled["ci_low"]) == page.report.queue.ci_low and pooled["labeler_id"] == ""
    cmd, ana = table[1], table[2]
    assert int(cmd["labeler_id"]) == users[0].pk and int(cmd["rankings"]) == 4 and int(cmd["pairs"]) == 2 * 4 * 3
    assert float(cmd["agreement"]) == 0.0 and cmd["low_agreement"] == "true" and ana["low_agreement"] == "false"
    assert float(ana["agreement"]) == 0.5 and ana["consensus_agreement"] == ""
    assert cmd["gold_accuracy"] == "" and cmd["gold_prompts"] == "0" and cmd["gold_flagged"] == "false"
    assert float(cmd["skip_rate"]) == 0.0 and float(cmd["median_seconds"]) >= 0


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(text):
    assert csv_cell(text) == "'" + text


def test_csv_cells_of_numbers_and_plain_text_are_unchanged():
    assert [csv_cell(v) for v in ("ana", 0.25, 3, None, True)] == ["ana", "0.25", "3", "", "true"]


@pytest.mark.parametrize("role", ["labeler", "ml", None])
def test_only_admins_open_the_admin_pages(db, client, role):
    queue = make_queue("Perm", prompts=1, answers=2)
    job = ImportJob.objects.create(queue=queue, file="imports/x.jsonl", original_name="x.jsonl")
    urls = [
        reverse("manage-queues"),
        reverse("manage-queue-new"),
        reverse("manage-queue", args=[queue.pk]),
        reverse("manage-queue-edit", args=[queue.pk]),
        reverse("manage-queue-agreement", args=[queue.pk]),
        reverse("manage-queue-agreement-csv", args=[queue.pk]),
        reverse("manage-import", args=[job.pk]),
    ]
    if role is not None:
        client.force_login(make_user(f"p-{role}", role))
    for url in urls:
        response = client.get(url)
        if role is None:
            assert response.status_code == 302 and response.url.startswith(reverse("login")), url
        else:
            assert response.status_code == 403, url


@pytest.mark.parametrize("case", ["one labeler", "all ties", "one answer pair", "no overlap"])
def test_thin_data_gives_not_enough_data_not_nan(client, queue_admin, case):
    """Every admin page of a queue renders defined figures or "—", never NaN, on data too thin to compare."""
    answers = 2 if case == "one answer pair" else 4
    queue = make_queue(f"Thin {case}", prompts=3, answers=answers, task_kind=Queue.Kinds.RANKING,
                       ranking_overlap=1 if case == "no overlap" else 2)
    labelers = [make_user(f"thin-{i}", "labeler") for i in range(1 if case == "one labeler" else 2)]
    for user in labelers:
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            ids = sorted(assignment.answer_order)
            groups = [ids] if case == "all ties" else [[pk] for pk in ids]
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=groups)
    client.force_login(queue_admin)
    prompt = queue.prompts.order_by("pk").first()
    for name, args in [("manage-queues", []), ("manage-queue", [queue.pk]), ("manage-queue-agreement", [queue.pk]),
                       ("manage-queue-agreement-csv", [queue.pk]), ("manage-review", [queue.pk]),
                       ("manage-review-prompt", [queue.pk, prompt.pk])]:
        response = client.get(reverse(name, args=args))
        body = response.content.decode()
        assert response.status_code == 200, name
        assert not shows_nan(body), name
    agreement = client.get(reverse("manage-queue-agreement", args=[queue.pk])).content.decode()
    if case == "one answer pair":  # two labelers ordering the same single pair the same way
        assert "1.000" in agreement
    else:
        assert "Not enough data" in agreement

"""The queue agreement page: figures from the database equal the report's, in a bounded number of queries."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.assignment.services import lease_next_task, skip_task, submit_ranking
from labeling.models import Queue, Ranking
from labeling.quality.agreement import pairwise_agreement
from labeling.ranking import ranks_from_groups
from tests.conftest import make_queue, make_user, shows_nan


def rank_queue(queue: Queue, labelers: list, *, reverse_for: str | None = None) -> None:
    """Each labeler ranks every prompt by answer position; `reverse_for` ranks in reverse."""
    for user in labelers:
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            order = sorted(assignment.answer_order)
            if user.username == reverse_for:
                order.reverse()
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in order])


def test_admins_see_agreement_with_the_outlier_highlighted(client, queue_admin):
    queue = make_queue("Agree", prompts=6, answers=4, task_kind=Queue.Kinds.RANKING, ranking_overlap=3)
    users = [make_user(name, "labeler") for name in ("ana", "ben", "cy")]
    rank_queue(queue, users, reverse_for="cy")
    client.force_login(queue_admin)
    response = client.get(reverse("manage-queue-agreement", args=[queue.pk]))
    assert response.status_code == 200
    page = response.context["page"]
    # ana and ben agree on every pair, each disagrees with cy on every pair: pooled 1/3.
    assert page.report.queue.rate == pytest.approx(1 / 3) and page.report.queue.n == 3 * 6 * 6
    rows = {row["username"]: row for row in page.labelers}
    assert rows["cy"]["low"] and not rows["ana"]["low"]
    assert rows["cy"]["rate"] == 0.0 and rows["ana"]["rate"] == 0.5
    # cy's others (ana, ben) agree, and cy reverses them; ana's others (ben, cy) cancel out into ties.
    assert rows["cy"]["consensus_rate"] == 0.0 and rows["ana"]["consensus_rate"] is None
    html = response.content.decode()
    assert "review" in html and 'id="heat-map"' in html

    # The page's pooled figure equals the plain function applied ranking by ranking.
    agree = n = 0
    for prompt in queue.prompts.all():
        rankings = list(Ranking.objects.filter(assignment__task__prompt=prompt).order_by("pk"))
        ids = sorted(prompt.answers.values_list("pk", flat=True))
        vectors = [ranks_from_groups(r.groups, ids) for r in rankings]
        for i in range(len(vectors)):
            for j in range(i + 1, len(vectors)):
                rate, pairs = pairwise_agreement(vectors[i], vectors[j])
                agree, n = agree + rate * pairs, n + pairs
    assert page.report.queue.rate == pytest.approx(agree / n)


@pytest.mark.parametrize("prompts", [3, 15])
def test_the_agreement_page_runs_a_bounded_number_of_queries(client, queue_admin, prompts):
    queue = make_queue(f"Q{prompts}", prompts=prompts, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    users = [make_user(f"l{prompts}-{i}", "labeler") for i in range(3)]
    rank_queue(queue, users[:2])
    skip = lease_next_task(labeler=users[2], queue=queue)
    if skip is not None:
        skip_task(assignment_id=skip.pk, labeler=users[2], reason="unclear")
    client.force_login(queue_admin)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("manage-queue-agreement", args=[queue.pk])).status_code == 200
    # Session, user, roles and queue; the stored totals, pairs and labelers, assignments and usernames; at most 2
    # for the gold scores.
    assert len(queries) <= 4 + 5 + 2, [q["sql"][:80] for q in queries]


def test_a_queue_without_rankings_says_not_enough_data(client, queue_admin):
    queue = make_queue("Empty", prompts=2, answers=3)
    client.force_login(queue_admin)
    html = client.get(reverse("manage-queue-agreement", args=[queue.pk])).content.decode()
    assert "Not enough data yet" in html and not shows_nan(html)


@pytest.mark.parametrize("role, expected", [("labeler", 403), ("ml", 403), ("admin", 200)])
def test_only_admins_open_the_agreement_page(db, client, role, expected):
    queue = make_queue("Perm", prompts=1, answers=2)
    client.force_login(make_user(f"p-{role}", role))
    assert client.get(reverse("manage-queue-agreement", args=[queue.pk])).status_code == expected


"""Disagreement review: prompts by lowest agreement, one prompt side by side, and the decisions on them."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.assignment.services import lease_next_task, skip_task, submit_ranking
from labeling.models import Prompt, PromptAction, Queue, Ranking, Task
from labeling.quality import review
from labeling.quality.agreement import consensus_ranking
from tests.conftest import make_queue, make_user


def rank_all(queue: Queue, users: list, *, reverse_on: set[int] = frozenset(), reverse_for: str = "") -> None:
    """Each labeler ranks every prompt by answer position; `reverse_for` reverses on prompts in `reverse_on`."""
    for user in users:
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            order = sorted(assignment.answer_order)
            if user.username == reverse_for and assignment.task.prompt_id in reverse_on:
                order.reverse()
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in order])


@pytest.fixture
def ranked(db):
    queue = make_queue("Review", prompts=4, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=3)
    users = [make_user(name, "labeler") for name in ("ana", "ben", "cy")]
    prompts = list(queue.prompts.order_by("pk"))
    # cy reverses the others on the third prompt only.
    rank_all(queue, users[:2])
    rank_all(queue, users[2:], reverse_on={prompts[2].pk}, reverse_for="cy")
    return queue, users, prompts


def test_the_list_puts_the_least_agreed_prompts_first(client, queue_admin, ranked):
    queue, users, prompts = ranked
    client.force_login(queue_admin)
    response = client.get(reverse("manage-review", args=[queue.pk]))
    assert response.status_code == 200
    rows = response.context["rows"]
    assert rows[0]["prompt_id"] == prompts[2].pk
    # ana and ben agree on the 3 pairs; each disagrees with cy on all 3: 3 of 9.
    assert rows[0]["rate"] == pytest.approx(1 / 3) and rows[0]["n"] == 9
    assert all(row["rate"] == 1.0 for row in rows[1:]) and len(rows) == 4


@pytest.mark.parametrize("prompts", [3, 12])
def test_the_list_runs_a_bounded_number_of_queries(client, queue_admin, prompts):
    queue = make_queue(f"B{prompts}", prompts=prompts, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    rank_all(queue, [make_user(f"b{prompts}-{i}", "labeler") for i in range(2)])
    client.force_login(queue_admin)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("manage-review", args=[queue.pk]))
    assert response.status_code == 200 and len(response.context["rows"]) == prompts
    # session, user, roles, queue, labels, one page of prompts
    assert len(queries) <= 7, [q["sql"] for q in queries]


def test_the_prompt_page_shows_every_ranking_beside_the_consensus(client, queue_admin, ranked):
    queue, users, prompts = ranked
    prompt = prompts[2]
    client.force_login(queue_admin)
    response = client.get(reverse("manage-review-prompt", args=[queue.pk, prompt.pk]))
    assert response.status_code == 200
    data = response.context["review"]
    assert [c.username for c in data.columns] == ["ana", "ben", "cy"]
    groups = [r.groups for r in Ranking.objects.filter(assignment__task__prompt=prompt)]
    assert data.consensus == consensus_ranking(groups)
    answers = list(prompt.answers.order_by("position"))
    # Consensus follows ana and ben: answers in position order; cy's column is reversed.
    assert [row[2]["rank"] for row in data.rows] == [1, 2, 3]
    assert [row[1][2]["rank"] for row in data.rows] == [3, 2, 1]
    assert [row[0] for row in data.rows] == answers
    assert data.agreement == pytest.approx(1 / 3)
    by_name = {c.username: c for c in data.columns}
    assert by_name["cy"].agreement == 0.0 and by_name["ana"].agreement is None  # ben and cy cancel out
    assert 'id="rankings"' in response.content.decode()


def test_excluding_records_the_reason_and_stops_serving_the_prompt(queue_admin):
    queue = make_queue("Ex", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)
    first, second = queue.prompts.order_by("pk")
    with pytest.raises(review.ReviewError, match="reason"):
        review.exclude_prompts(queue=queue, prompt_ids=[first.pk], reason="  ", user=queue_admin)
    assert review.exclude_prompts(queue=queue, prompt_ids=[first.pk], reason="ambiguous", user=queue_admin) == 1
    action = PromptAction.objects.get()
    assert (action.prompt_id, action.kind, action.reason, action.user) == (
        first.pk, PromptAction.Kind.EXCLUDE, "ambiguous", queue_admin)
    labeler = make_user("lx", "labeler")
    assignment = lease_next_task(labeler=labeler, queue=queue)
    assert assignment.task.prompt_id == second.pk
    review.include_prompts(queue=queue, prompt_ids=[first.pk], reason="fixed", user=queue_admin)
    assert not Prompt.objects.get(pk=first.pk).excluded


def test_a_wrong_id_changes_nothing(queue_admin):
    queue = make_queue("W", prompts=2, answers=3)
    other = make_queue("Other", prompts=1, answers=3)
    ids = list(queue.prompts.values_list("pk", flat=True)) + [other.prompts.get().pk]
    with pytest.raises(review.ReviewError, match="not in queue"):
        review.exclude_prompts(queue=queue, prompt_ids=ids, reason="x", user=queue_admin)
    with pytest.raises(review.ReviewError, match="numbers"):
        review.exclude_prompts(queue=queue, prompt_ids=["1; drop"], reason="x", user=queue_admin)
    with pytest.raises(review.ReviewError, match="Select"):
        review.exclude_prompts(queue=queue, prompt_ids=[], reason="x", user=queue_admin)
    assert not Prompt.objects.filter(excluded=True).exists() and not PromptAction.objects.exists()


def test_raising_overlap_brings_more_labels_and_survives_a_queue_edit(queue_admin):
    queue = make_queue("More", prompts=1, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)
    prompt = queue.prompts.get()
    first, second = make_user("m1", "labeler"), make_user("m2", "labeler")
    rank_all(queue, [first, second])
    assert Task.objects.get(prompt=prompt).submitted_count == 1
    for bad in (0, 11, "x", True):
        with pytest.raises(review.ReviewError):
            review.raise_overlap(queue=queue, prompt_ids=[prompt.pk], by=bad, reason="r", user=queue_admin)
    review.raise_overlap(queue=queue, prompt_ids=[prompt.pk], by=1, reason="disputed", user=queue_admin)
    # Editing the queue re-applies its overlap; the extra label asked for this prompt stays.
    from labeling.queues.services import save_queue
    save_queue(queue)
    task = Task.objects.get(prompt=prompt)
    assert (task.overlap, task.extra_overlap) == (2, 1)
    rank_all(queue, [second])
    assert Task.objects.get(prompt=prompt).submitted_count == 2
    assert PromptAction.objects.get().detail == {"by": 1}


def test_requeue_puts_prompts_first_and_includes_them(queue_admin):
    queue = make_queue("Re", prompts=3, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)
    prompts = list(queue.prompts.order_by("pk"))
    review.exclude_prompts(queue=queue, prompt_ids=[prompts[2].pk], reason="x", user=queue_admin)
    review.requeue_prompts(queue=queue, prompt_ids=[prompts[2].pk], reason="urgent", user=queue_admin)
    assert lease_next_task(labeler=make_user("r1", "labeler"), queue=queue).task.prompt_id == prompts[2].pk


def test_gold_needs_a_valid_reference(queue_admin, ranked):
    queue, users, prompts = ranked
    prompt = prompts[0]
    ids = list(prompt.answers.order_by("position").values_list("pk", flat=True))
    with pytest.raises(review.ReviewError, match="every answer"):
        review.set_gold(queue=queue, prompt_id=prompt.pk, groups=[ids[:2]], reason="x", user=queue_admin)
    with pytest.raises(review.ReviewError, match="ties every answer"):
        review.set_gold(queue=queue, prompt_id=prompt.pk, groups=[ids], reason="x", user=queue_admin)
    reference = [[i] for i in ids]
    task = review.set_gold(queue=queue, prompt_id=prompt.pk, groups=reference, reason="clear", user=queue_admin)
    assert task.gold_groups == reference
    review.clear_gold(queue=queue, prompt_id=prompt.pk, reason="done", user=queue_admin)
    with pytest.raises(review.ReviewError, match="not a gold"):
        review.clear_gold(queue=queue, prompt_id=prompt.pk, reason="again", user=queue_admin)
    assert list(PromptAction.objects.order_by("pk").values_list("kind", flat=True)) == ["set_gold", "clear_gold"]


def test_admins_decide_from_the_pages(client, queue_admin, ranked):
    queue, users, prompts = ranked
    prompt = prompts[2]
    client.force_login(queue_admin)
    url = reverse("manage-review-action", args=[queue.pk, prompt.pk])
    response = client.post(url, {"action": "set_gold", "reference": "consensus", "reason": "clear case"}, follow=True)
    assert "Made a gold item" in response.content.decode()
    assert Task.objects.get(prompt=prompt).gold_groups == consensus_ranking(
        [r.groups for r in Ranking.objects.filter(assignment__task__prompt=prompt)])
    response = client.post(url, {"action": "exclude", "reason": ""}, follow=True)
    assert "Nothing was changed" in response.content.decode() and not Prompt.objects.get(pk=prompt.pk).excluded
    bulk = reverse("manage-review-bulk", args=[queue.pk])
    response = client.post(bulk, {"action": "exclude", "reason": "<script>alert(1)</script>",
                                  "prompt": [prompts[0].pk, prompts[1].pk]}, follow=True)
    assert Prompt.objects.filter(excluded=True).count() == 2
    page = client.get(reverse("manage-review-prompt", args=[queue.pk, prompts[0].pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_skips_show_on_the_prompt_page(client, queue_admin):
    queue = make_queue("Sk", prompts=1, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    user = make_user("sk", "labeler")
    assignment = lease_next_task(labeler=user, queue=queue)
    skip_task(assignment_id=assignment.pk, labeler=user, reason="other", note="cannot read it")
    client.force_login(queue_admin)
    page = client.get(reverse("manage-review-prompt", args=[queue.pk, queue.prompts.get().pk])).content.decode()
    assert "cannot read it" in page and "No one has ranked this prompt yet" in page


@pytest.mark.parametrize("role", ["labeler", "ml"])
def test_only_admins_review(client, role, ranked):
    queue, users, prompts = ranked
    client.force_login(make_user(f"someone-{role}", role))
    for url in (reverse("manage-review", args=[queue.pk]),
                reverse("manage-review-prompt", args=[queue.pk, prompts[0].pk])):
        assert client.get(url).status_code == 403
    for url in (reverse("manage-review-bulk", args=[queue.pk]),
                reverse("manage-review-action", args=[queue.pk, prompts[0].pk])):
        assert client.post(url, {"action": "exclude", "reason": "x", "prompt": [prompts[0].pk]}).status_code == 403
    assert not Prompt.objects.filter(excluded=True).exists()


def test_a_prompt_of_another_queue_is_not_found(client, queue_admin, ranked):
    queue, users, prompts = ranked
    other = make_queue("Elsewhere", prompts=1, answers=3)
    client.force_login(queue_admin)
    assert client.get(reverse("manage-review-prompt", args=[other.pk, prompts[0].pk])).status_code == 404
    assert client.post(reverse("manage-review-action", args=[other.pk, prompts[0].pk]),
                       {"action": "exclude", "reason": "x"}).status_code == 404

"""Pages through Django's test client: who may open what, and the labeler and admin flows."""

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.assignment.services import lease_next_task, sync_tasks
from labeling.models import Answer, Assignment, Demonstration, ImportJob, Prompt, Queue, Ranking
from tests.conftest import make_queue, make_user

ROLES = {"anonymous": None, "labeler": "labeler", "admin": "admin", "ml": "ml"}


@pytest.fixture
def pages(db):
    queue = make_queue("Pages", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING)
    job = ImportJob.objects.create(queue=queue, file="imports/x.jsonl", original_name="x.jsonl")
    return {
        "home": (reverse("home"), {"anonymous": 302, "labeler": 200, "admin": 302, "ml": 302}),
        "next": (reverse("next-task"), {"anonymous": 302, "labeler": 302, "admin": 403, "ml": 403}),
        "queue next": (
            reverse("queue-next-task", args=[queue.pk]),
            {"anonymous": 302, "labeler": 302, "admin": 403, "ml": 403},
        ),
        "manage queues": (reverse("manage-queues"), {"anonymous": 302, "labeler": 403, "admin": 200, "ml": 403}),
        "new queue": (reverse("manage-queue-new"), {"anonymous": 302, "labeler": 403, "admin": 200, "ml": 403}),
        "queue": (
            reverse("manage-queue", args=[queue.pk]),
            {"anonymous": 302, "labeler": 403, "admin": 200, "ml": 403},
        ),
        "edit queue": (
            reverse("manage-queue-edit", args=[queue.pk]),
            {"anonymous": 302, "labeler": 403, "admin": 200, "ml": 403},
        ),
        "import job": (
            reverse("manage-import", args=[job.pk]),
            {"anonymous": 302, "labeler": 403, "admin": 200, "ml": 403},
        ),
    }


@pytest.mark.parametrize("role", ROLES)
def test_each_page_answers_each_role_as_expected(client, pages, role):
    if ROLES[role]:
        client.force_login(make_user(f"user-{role}", ROLES[role]))
    for name, (url, expected) in pages.items():
        response = client.get(url)
        assert response.status_code == expected[role], f"{name} as {role}"
        if expected[role] == 302 and role == "anonymous":
            assert response.url.startswith(reverse("login")), name


@pytest.mark.parametrize(
    "url_name", ["task-submit", "task-skip", "manage-queue-toggle", "manage-queue-import", "markdown-preview"]
)
def test_posts_refuse_anonymous_users(client, ranking_queue, labeler, url_name):
    args = [] if url_name == "markdown-preview" else [1]
    response = client.post(reverse(url_name, args=args))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_posts_need_the_right_role(client, ranking_queue, labeler, queue_admin):
    assignment = lease_next_task(labeler=labeler, queue=ranking_queue)
    client.force_login(queue_admin)
    assert client.post(reverse("task-submit", args=[assignment.pk]), {"groups": "[]"}).status_code == 403
    client.force_login(labeler)
    assert client.post(reverse("manage-queue-toggle", args=[ranking_queue.pk])).status_code == 403
    ranking_queue.refresh_from_db()
    assert ranking_queue.is_open


def test_a_labeler_cannot_open_or_submit_another_labelers_assignment(client, ranking_queue, labeler, labeler2):
    theirs = lease_next_task(labeler=labeler2, queue=ranking_queue)
    client.force_login(labeler)
    assert client.get(reverse("task", args=[theirs.pk])).status_code == 404
    groups = json.dumps([[pk] for pk in theirs.answer_order])
    assert client.post(reverse("task-submit", args=[theirs.pk]), {"groups": groups}).status_code == 404
    assert client.post(reverse("task-skip", args=[theirs.pk]), {"reason": "unclear"}).status_code == 404
    assert not Ranking.objects.exists()
    theirs.refresh_from_db()
    assert theirs.status == Assignment.Status.LEASED


def test_home_lists_open_queues_with_the_labelers_progress(client, labeler):
    make_queue("Open one", prompts=3, answers=2, task_kind=Queue.Kinds.BOTH)
    make_queue("Paused one", prompts=1, answers=2, is_open=False)
    client.force_login(labeler)
    page = client.get(reverse("home")).content.decode()
    assert "Open one" in page and "Paused one" not in page
    assert page.count("Start labeling") == 2  # one per task kind


def test_rank_submit_stores_the_ranking_and_opens_the_next_task(client, ranking_queue, labeler):
    client.force_login(labeler)
    response = client.get(reverse("queue-next-task", args=[ranking_queue.pk]))
    assignment = Assignment.objects.get(labeler=labeler)
    assert response.url == reverse("task", args=[assignment.pk])
    page = client.get(response.url)
    assert page.status_code == 200
    a, b, c, d = assignment.answer_order
    data = {
        "groups": json.dumps([[a], [b, c], [d]]),
        f"rating-{a}": "7",
        f"flag-{d}": ["harmful"],
        "time_spent_ms": "5",
    }
    response = client.post(reverse("task-submit", args=[assignment.pk]), data)
    assert response.status_code == 302
    # Straight to the next task's page, leased by the submit (no request through `next`), with the news.
    following = Assignment.objects.get(labeler=labeler, status=Assignment.Status.LEASED)
    assert following.task.prompt_id != assignment.task.prompt_id
    assert response.url == reverse("task", args=[following.pk])
    assert "Submitted. Here is your next task." in client.get(response.url).content.decode()
    ranking = Ranking.objects.get(assignment=assignment)
    assert ranking.groups == [[a], [b, c], [d]]
    labels = {label.answer_id: label for label in ranking.answer_labels.all()}
    assert [labels[x].rank for x in (a, b, c, d)] == [1, 2, 2, 4]
    assert labels[a].rating == 7 and labels[b].rating is None
    assert labels[d].flags == ["harmful"]
    # The same submit again (double click) stores nothing more and says so.
    again = client.post(reverse("task-submit", args=[assignment.pk]), data, follow=True)
    assert Ranking.objects.count() == 1
    assert "already submitted" in again.content.decode()


def test_incomplete_ranking_is_refused_and_the_page_keeps_the_input(client, ranking_queue, labeler):
    assignment = lease_next_task(labeler=labeler, queue=ranking_queue)
    client.force_login(labeler)
    a = assignment.answer_order[0]
    response = client.post(
        reverse("task-submit", args=[assignment.pk]), {"groups": json.dumps([[a]]), f"rating-{a}": "3"}
    )
    assert response.status_code == 400
    assert "Place every answer" in response.content.decode()
    assert response.context["initial_ratings"] == {a: "3"}
    assert not Ranking.objects.exists()
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"groups": "not json"})
    assert response.status_code == 400 and not Ranking.objects.exists()


def test_demonstration_submit_and_empty_text(client, labeler):
    queue = make_queue("Demo", prompts=2, answers=0, task_kind=Queue.Kinds.DEMONSTRATION)
    client.force_login(labeler)
    client.get(reverse("queue-next-task", args=[queue.pk]))
    assignment = Assignment.objects.get(labeler=labeler)
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"text": "   "})
    assert response.status_code == 400 and "empty" in response.content.decode()
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"text": "An **ideal** answer."})
    assert response.status_code == 302
    assert Demonstration.objects.get(assignment=assignment).text == "An **ideal** answer."
    following = Assignment.objects.get(labeler=labeler, status=Assignment.Status.LEASED)  # the other prompt's
    assert response.url == reverse("task", args=[following.pk]) != reverse("task", args=[assignment.pk])
    assert client.get(response.url).status_code == 200


def test_skip_needs_a_note_for_other(client, ranking_queue, labeler):
    assignment = lease_next_task(labeler=labeler, queue=ranking_queue)
    client.force_login(labeler)
    response = client.post(reverse("task-skip", args=[assignment.pk]), {"reason": "other", "note": ""})
    assert response.status_code == 400
    response = client.post(reverse("task-skip", args=[assignment.pk]), {"reason": "other", "note": "Not English"})
    assert response.status_code == 302
    assignment.refresh_from_db()
    assert (assignment.status, assignment.skip_reason, assignment.skip_note) == ("skipped", "other", "Not English")


def test_untrusted_text_is_escaped_on_the_task_page(client, labeler):
    queue = make_queue("Hostile", prompts=1, answers=2, task_kind=Queue.Kinds.RANKING)
    prompt = queue.prompts.get()
    prompt.text = "<script>alert('prompt')</script> **bold**"
    prompt.save()
    answer = prompt.answers.first()
    answer.text = '<img src=x onerror="alert(1)"> [link](javascript:alert(2))'
    answer.save()
    client.force_login(labeler)
    page = client.get(client.get(reverse("queue-next-task", args=[queue.pk])).url).content.decode()
    assert "&lt;script&gt;alert(&#x27;prompt&#x27;)&lt;/script&gt;" in page or "&lt;script&gt;" in page
    assert "<script>alert" not in page
    assert "<img src=x" not in page and 'href="javascript:' not in page
    assert "<strong>bold</strong>" in page


def test_markdown_preview_is_sanitised(client, labeler):
    client.force_login(labeler)
    response = client.post(reverse("markdown-preview"), {"text": "**hi** <script>x()</script>"})
    assert response.status_code == 200
    assert response.content.decode().strip() == "<p><strong>hi</strong> &lt;script&gt;x()&lt;/script&gt;</p>"


def test_admin_creates_a_queue_and_imports_prompts(
    client, queue_admin, labeler, settings, tmp_path, django_capture_on_commit_callbacks, eager
):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(queue_admin)
    response = client.post(
        reverse("manage-queue-new"),
        {
            "name": "Fresh",
            "instructions": "Be *kind*",
            "task_kind": "both",
            "demonstration_overlap": 1,
            "ranking_overlap": 3,
            "priority": 5,
            "lease_seconds": 600,
            "is_open": "on",
            "gold_rate": 0.1,
            "gold_threshold": 0.7,
            "labelers": [labeler.pk],
        },
    )
    queue = Queue.objects.get(name="Fresh")
    assert response.url == reverse("manage-queue", args=[queue.pk])
    assert list(queue.labelers.all()) == [labeler] and queue.gold_rate == 0.1
    rows = b'{"prompt": "P1", "answers": ["a", "b"]}\n{"prompt": "P2"}\n'
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage-queue-import", args=[queue.pk]), {"file": SimpleUploadedFile("p.jsonl", rows)}
        )
    job = ImportJob.objects.get()
    assert response.url == reverse("manage-import", args=[job.pk])
    assert job.status == "succeeded" and job.created_count == 2
    assert queue.prompts.count() == 2
    # Demonstration tasks for both prompts, a ranking task only for the prompt with answers.
    assert sorted(queue.prompts.values_list("tasks__kind", flat=True)) == ["demonstration", "demonstration", "ranking"]
    assert "2 new prompts imported" in client.get(response.url).content.decode()


def test_import_page_takes_every_name_the_importer_reads(
    client, queue_admin, ranking_queue, settings, tmp_path, django_capture_on_commit_callbacks, eager
):
    """A .json-lines file (a JSONL name the importer reads) is accepted by the upload page and imported."""
    settings.MEDIA_ROOT = tmp_path
    client.force_login(queue_admin)
    rows = b'{"prompt": "P1", "answers": ["a", "b"]}\n{"prompt": "P2", "answers": ["c", "d"]}\n'
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage-queue-import", args=[ranking_queue.pk]), {"file": SimpleUploadedFile("p.json-lines", rows)}
        )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("manage-import", args=[job.pk])
    assert job.original_name == "p.json-lines"
    assert job.status == "succeeded" and job.created_count == 2
    assert set(ranking_queue.prompts.values_list("text", flat=True)) >= {"P1", "P2"}


def test_import_page_refuses_wrong_files(client, queue_admin, ranking_queue, settings):
    settings.MAX_IMPORT_BYTES = 10
    client.force_login(queue_admin)
    url = reverse("manage-queue-import", args=[ranking_queue.pk])
    page = client.post(url, {"file": SimpleUploadedFile("p.jsonl", b"x" * 11)}, follow=True).content.decode()
    assert "the limit is 10 bytes" in page
    page = client.post(url, {"file": SimpleUploadedFile("p.exe", b"x")}, follow=True).content.decode()
    assert "Upload a .jsonl or .csv file" in page
    assert not ImportJob.objects.exists()


def test_admin_pauses_a_queue_and_labelers_get_nothing(client, queue_admin, labeler, ranking_queue):
    client.force_login(queue_admin)
    client.post(reverse("manage-queue-toggle", args=[ranking_queue.pk]))
    client.force_login(labeler)
    response = client.get(reverse("queue-next-task", args=[ranking_queue.pk]))
    # As if the queue did not exist (see the test below), with a page that says why there is nothing.
    assert response.status_code == 404 and "Nothing left to label" in response.content.decode()
    assert "may have been paused" in response.content.decode()
    assert not Assignment.objects.exists()


def test_a_queue_not_open_to_a_labeler_answers_like_one_that_does_not_exist(client, labeler):
    """Its next-task page named the queue: a labeler could read the names of other teams' queues by id."""
    restricted = make_queue("Team B secret", prompts=1, answers=2)
    restricted.labelers.add(make_user("team-b", "labeler"))
    paused = make_queue("Paused secret", prompts=1, answers=2, is_open=False)
    unknown = max(restricted.pk, paused.pk) + 1000
    client.force_login(labeler)
    answers = [client.get(reverse("queue-next-task", args=[pk])) for pk in (unknown, restricted.pk, paused.pk)]
    assert [response.status_code for response in answers] == [404, 404, 404]
    # The same page but for the CSRF token of the logout form, which is masked anew on each page.
    bodies = [re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", r.content.decode()) for r in answers]
    assert bodies[1] == bodies[0] and bodies[2] == bodies[0]
    assert "secret" not in bodies[0]
    assert not Assignment.objects.exists()


def test_markdown_keeps_single_line_breaks_of_model_answers():
    from core.text import render_markdown

    assert (
        render_markdown("Cold rain on red leaves\nthe gutter hums")
        == "<p>Cold rain on red leaves<br>\nthe gutter hums</p>\n"
    )


@pytest.mark.aggregates_on_commit  # the worker counts the agreement figures, not the request
@pytest.mark.parametrize("answers", [2, 9])
def test_next_task_and_submit_requests_run_a_constant_number_of_queries(client, labeler, answers):
    """Whole requests (session, user, roles included): the same count for 2 and 9 answers."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queue = make_queue(f"K{answers}", prompts=30, answers=answers, task_kind=Queue.Kinds.RANKING)
    client.force_login(labeler)
    with CaptureQueriesContext(connection) as next_queries:
        response = client.get(reverse("queue-next-task", args=[queue.pk]))
    assignment = Assignment.objects.get(labeler=labeler)
    groups = json.dumps([[pk] for pk in assignment.answer_order])
    with CaptureQueriesContext(connection) as submit_queries:
        response = client.post(reverse("task-submit", args=[assignment.pk]), {"groups": groups})
    assert response.status_code == 302 and Ranking.objects.count() == 1
    print(f"K={answers}: next-task request {len(next_queries)} queries, submit request {len(submit_queries)}")
    assert len(next_queries) <= 12
    assert len(submit_queries) <= 20  # the submit leases the next task too (labeling.assignment.views._to_next_task)


def test_an_oversized_submit_gets_a_clear_page_and_stores_nothing(client, labeler, settings):
    queue = make_queue("Huge", prompts=1, answers=0, task_kind=Queue.Kinds.DEMONSTRATION)
    client.force_login(labeler)
    assignment = Assignment.objects.get(pk=client.get(reverse("queue-next-task", args=[queue.pk])).url.split("/")[-2])
    too_big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"text": too_big})
    assert response.status_code == 400 and "too large or malformed" in response.content.decode()
    just_over = "y" * (settings.MAX_TEXT_CHARS + 1)
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"text": just_over})
    assert response.status_code == 400 and "the limit is" in response.content.decode()
    assert not Demonstration.objects.exists()


def test_every_page_names_an_icon_that_is_served(client, db):
    """Browsers ask for an icon on every page; a missing one is a failed request in each console."""
    page = client.get(reverse("login")).content.decode()
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    response = client.get(icon)
    assert response.status_code == 200 and b"<svg" in b"".join(response.streaming_content)


def test_ids_on_the_task_page_are_never_localized(client, labeler, settings):
    """With a thousands separator on, answer 12345 must still read data-answer-id="12345" (the page's script and
    the submitted ranking use it)."""
    settings.USE_THOUSAND_SEPARATOR = True
    queue = Queue.objects.create(name="Big ids", ranking_overlap=1)
    prompt = Prompt.objects.create(queue=queue, text="A prompt", content_hash="big-ids")
    Answer.objects.bulk_create(Answer(pk=12345 + j, prompt=prompt, position=j, text=f"Answer {j}") for j in range(2))
    sync_tasks(queue)
    client.force_login(labeler)
    page = client.get(client.get(reverse("queue-next-task", args=[queue.pk])).url).content.decode()
    assert 'data-answer-id="12345"' in page and 'name="rating-12346"' in page
    assert "12,345" not in page

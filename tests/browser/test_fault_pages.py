"""The labeler's pages in Chromium when a submit fails: the database connection is lost during the
submit (a real pg_terminate_backend in the live server's thread), the 503 page says nothing was saved,
and back on the task the ranking or the text is still there and a second submit stores it once."""
import re

import pytest
from playwright.sync_api import Page, expect

from labeling.models import AnswerLabel, Assignment, Demonstration, Queue, Ranking, TaskKind
from tests.conftest import make_user
from tests.faults.dbfaults import kill_before

from .conftest import DEMONSTRATION_PROMPTS, RAINBOW, RAINBOW_ANSWERS, log_in, make_labeling_queue
from .test_labeler_pages import as_ids, keys, open_next, ranked_numbers

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgresql_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("Terminating a server backend needs PostgreSQL: set DATABASE_URL.")


def test_a_ranking_whose_submit_lost_the_database_is_still_there_and_goes_through_once(page: Page, monkeypatch):
    labeler = make_user("lee", "labeler")
    queue = make_labeling_queue("Sky", kind=Queue.Kinds.RANKING, prompts=[(RAINBOW, RAINBOW_ANSWERS)])
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)
    task_url = page.url
    keys(page, "3", "Enter", "Shift+Digit6", "1", "Enter", "t", "5", "Enter", "2", "Enter", "4", "Enter")
    assert ranked_numbers(page) == [3, 1, 5, 2, 4]
    page.locator('.answer-card[data-number="4"] .flags input').first.check()
    calls = kill_before(monkeypatch, AnswerLabel.objects, "bulk_create")

    keys(page, "Control+Enter")

    expect(page.locator("h1")).to_have_text("Nothing was saved: please try again")
    assert calls == [1]
    assert Ranking.objects.count() == 0
    # The page's own link back: a fresh load of the task, which finds the ranking kept in this tab.
    page.get_by_role("link", name="Go back").click()
    page.wait_for_url(task_url)
    assert ranked_numbers(page) == [3, 1, 5, 2, 4]
    expect(page.locator('.answer-card[data-number="3"] input[value="6"]')).to_be_checked()
    expect(page.locator('.answer-card[data-number="4"] .flags input').first).to_be_checked()
    expect(page.locator("#rank-submit")).to_be_enabled()

    keys(page, "Control+Enter")
    page.wait_for_url(lambda url: url != task_url)
    ranking = Ranking.objects.get()
    assert ranking.assignment_id == assignment.pk
    assert ranking.groups == as_ids(assignment, [[3, 1], [5], [2], [4]])
    labels = {label.answer_id: label for label in AnswerLabel.objects.all()}
    three, four = as_ids(assignment, [[3, 4]])[0]
    assert len(labels) == 5 and labels[three].rating == 6 and len(labels[four].flags) == 1
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED and assignment.task.submitted_count == 1


def test_the_browsers_back_button_after_a_503_keeps_the_ranking_too(page: Page, monkeypatch):
    labeler = make_user("lee", "labeler")
    queue = make_labeling_queue("Sky", kind=Queue.Kinds.RANKING, prompts=[(RAINBOW, RAINBOW_ANSWERS)])
    log_in(page, labeler)
    open_next(page, queue, TaskKind.RANKING)
    task_url = page.url
    keys(page, "2", "Enter", "1", "Enter", "3", "Enter", "4", "Enter", "5", "Enter")
    kill_before(monkeypatch, AnswerLabel.objects, "bulk_create")
    keys(page, "Control+Enter")
    expect(page.locator("h1")).to_have_text("Nothing was saved: please try again")

    page.go_back()
    page.wait_for_url(task_url)
    assert ranked_numbers(page) == [2, 1, 3, 4, 5]
    page.locator("#rank-submit").click()
    page.wait_for_url(lambda url: url != task_url)
    assert Ranking.objects.count() == 1 and AnswerLabel.objects.count() == 5


def test_a_demonstration_whose_submit_lost_the_database_is_still_there_and_goes_through_once(
    page: Page, monkeypatch
):
    labeler = make_user("ali", "labeler")
    queue = make_labeling_queue(
        "Writing", kind=Queue.Kinds.DEMONSTRATION, prompts=[(text, []) for text in DEMONSTRATION_PROMPTS]
    )
    log_in(page, labeler)
    first = open_next(page, queue, TaskKind.DEMONSTRATION)
    task_url = page.url
    text = "Dear Sam,\n\ncould you water my tomatoes?"
    page.locator("#demo-text").fill(text)
    kill_before(monkeypatch, Demonstration.objects, "create")

    page.locator("#demo-text").press("Control+Enter")

    expect(page.locator("h1")).to_have_text("Nothing was saved: please try again")
    assert Demonstration.objects.count() == 0
    page.get_by_role("link", name="Go back").click()
    page.wait_for_url(task_url)
    expect(page.locator("#demo-text")).to_have_value(text)

    page.locator("#demo-submit").click()
    page.wait_for_url(lambda url: url != task_url)
    assert list(Demonstration.objects.values_list("assignment_id", "text")) == [(first.pk, text)]
    # The next task's editor starts empty, and the sent draft is gone from storage.
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    expect(page.locator("#demo-text")).to_have_value("")
    keys_left = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('demonstration-draft:'))")
    assert keys_left == []

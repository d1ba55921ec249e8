"""The admin's queue dashboard, agreement page and disagreement review, driven in headless Chromium.

Three labelers rank a realistic queue (one of them disagrees on one prompt); the admin finds that
prompt at the top of the review, reads the rankings side by side, makes it a gold item with the
consensus as reference, and excludes other prompts in bulk. Each step is checked in the database.
"""
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import Assignment, Prompt, PromptAction, Queue, Task, TaskKind
from tests.conftest import make_user

from .conftest import PHOTOSYNTHESIS, PHOTOSYNTHESIS_ANSWERS, RAINBOW, RAINBOW_ANSWERS, log_in, make_labeling_queue

pytestmark = pytest.mark.browser

MORE_PROMPTS = [
    ("Suggest a name for a friendly robot vacuum.", ["Dusty", "Robo-Cleaner 3000", "Sir Sweeps-a-Lot", "Bob"]),
    ("What is 17 × 6? Show the working.", ["102: 17 × 6 = 60 + 42 = 102", "112", "102", "17 × 6 is about 100"]),
    ("Translate 'good morning' into Spanish.", ["Buenos días", "Buenas noches", "Bonjour", "buenos dias!"]),
]


@pytest.fixture
def labeled_queue(db):
    queue = make_labeling_queue(
        "Helpfulness, round 2",
        kind=Queue.Kinds.RANKING,
        prompts=[(PHOTOSYNTHESIS, PHOTOSYNTHESIS_ANSWERS), (RAINBOW, RAINBOW_ANSWERS), *MORE_PROMPTS],
        ranking_overlap=3,
    )
    disputed = Prompt.objects.get(queue=queue, text=RAINBOW)
    for name in ("amira", "bo", "chen"):
        user = make_user(name, "labeler")
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            order = sorted(assignment.answer_order)
            if assignment.task.prompt_id == disputed.pk and name == "chen":
                order.reverse()
            elif name == "bo" and assignment.task.prompt_id != disputed.pk:
                order[0], order[1] = order[1], order[0]  # a small disagreement elsewhere
            # As if the labeler had spent a while on it, some days ago (the dashboard's chart and timings).
            Assignment.objects.filter(pk=assignment.pk).update(leased_at=timezone.now() - timedelta(minutes=5))
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in order],
                           time_spent_ms=30_000 + 7_000 * len(order))
    for day, assignment in enumerate(Assignment.objects.order_by("pk")):
        Assignment.objects.filter(pk=assignment.pk).update(finished_at=timezone.now() - timedelta(days=day % 6))
    return queue, disputed


def test_an_admin_reviews_the_most_disputed_prompt(page: Page, labeled_queue, tmp_path: Path):
    queue, disputed = labeled_queue
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    log_in(page, make_user("ada", "admin"))

    page.goto(reverse("manage-queues"))
    expect(page.get_by_role("link", name="Helpfulness, round 2")).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    page.screenshot(path=folder / "queue_list.png", full_page=True)

    page.goto(reverse("manage-queue-agreement", args=[queue.pk]))
    expect(page.locator("#labeler-table")).to_contain_text("chen")
    expect(page.locator("canvas").first).to_be_visible()
    page.screenshot(path=folder / "agreement.png", full_page=True)

    page.goto(reverse("manage-review", args=[queue.pk]))
    first = page.locator("#review-table tbody tr").first
    expect(first).to_contain_text(RAINBOW[:40])
    page.screenshot(path=folder / "review.png", full_page=True)

    # From the keyboard: focus the first prompt's link and open it.
    first.get_by_role("link").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/{disputed.pk}/")
    headers = page.locator("#rankings thead th")
    expect(headers).to_contain_text(["Answer", "amira", "bo", "chen", "Consensus"])
    page.screenshot(path=folder / "review_prompt.png", full_page=True)

    gold = page.locator("#gold-form")
    gold.get_by_label("Reference ranking").select_option("consensus")
    gold.get_by_label("Reason").fill("Clear case: the first and fourth answers are right.")
    gold.get_by_role("button", name="Make a gold item").click()
    expect(page.locator(".message-success")).to_contain_text("Made a gold item")
    task = Task.objects.get(prompt=disputed, kind=TaskKind.RANKING)
    assert task.gold_groups is not None and len(task.gold_groups) == len(RAINBOW_ANSWERS)
    expect(page.locator("#history")).to_contain_text("Clear case")

    # Bulk: exclude two prompts from the list page.
    page.goto(reverse("manage-review", args=[queue.pk]))
    others = list(Prompt.objects.filter(queue=queue, text__in=[p for p, _ in MORE_PROMPTS[:2]]))
    for prompt in others:
        page.get_by_label(f"Select prompt {prompt.pk}").check()
    form = page.locator("#bulk-form")
    form.get_by_label("Action").select_option("exclude")
    form.get_by_label("Reason").fill("Trick questions, not helpfulness")
    form.get_by_role("button", name="Apply to selected").click()
    expect(page.locator(".message-success")).to_contain_text("2 prompts")
    assert set(Prompt.objects.filter(excluded=True).values_list("pk", flat=True)) == {p.pk for p in others}
    assert PromptAction.objects.filter(kind="exclude").count() == 2

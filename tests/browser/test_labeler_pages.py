"""The two labeler task pages, driven in headless Chromium: ranking by keyboard and by mouse,
refusing an incomplete ranking, writing a demonstration with its preview, untrusted text shown as
text, and skipping. Each test checks what reached the database, not only what the page shows.

Answers are shown in a random order per labeler; `numbers_to_ids` maps the display numbers the
labeler sees (1..K) to answer ids through Assignment.answer_order.
"""
import os
import re
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect

from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import AnswerLabel, Assignment, Demonstration, Queue, Ranking, TaskKind
from tests.conftest import make_user

from .conftest import (
    DEMONSTRATION_PROMPTS,
    PHOTOSYNTHESIS,
    PHOTOSYNTHESIS_ANSWERS,
    RAINBOW,
    RAINBOW_ANSWERS,
    WRITING_INSTRUCTIONS,
    log_in,
    make_labeling_queue,
)

pytestmark = pytest.mark.browser

XSS_PROMPT = "Summarise this page: <script>window.__xss=1</script> and <img src=x onerror=window.__xss=2>"
XSS_ANSWER = "It says <img src=x onerror=window.__xss=2> and then <script>window.__xss=1</script>."


def open_next(page: Page, queue: Queue, kind: str) -> Assignment:
    """Take the next task of `kind` in `queue` the way a labeler does, and return its assignment."""
    page.goto(reverse("queue-next-task", args=[queue.pk]) + f"?kind={kind}")
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    return Assignment.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))


def numbers_to_ids(assignment: Assignment) -> dict[int, int]:
    return {number: answer_id for number, answer_id in enumerate(assignment.answer_order, start=1)}


def as_ids(assignment: Assignment, groups_by_number: list[list[int]]) -> list[list[int]]:
    ids = numbers_to_ids(assignment)
    return [[ids[number] for number in group] for group in groups_by_number]


def chip(page: Page, number: int) -> Locator:
    return page.locator(f'.chip[data-number="{number}"]')


def ranked_numbers(page: Page) -> list[int]:
    return [int(n) for n in page.locator("#ranked .chip").evaluate_all("els => els.map(e => e.dataset.number)")]


def panel_ranks(page: Page) -> list[str]:
    return page.locator("#ranked .chip .chip-rank").all_inner_texts()


def keys(page: Page, *presses: str) -> None:
    for press in presses:
        page.keyboard.press(press)


DRAG_STATE = """([where, target]) => {
    // Where the target is now, and whether the placeholder sits where the drop should go.
    const ghost = document.querySelector("#unplaced .chip--ghost, #ranked .chip--ghost");
    const element = where === "into"
        ? document.querySelector(target)
        : document.querySelector(`#unplaced .chip[data-number="${target}"], #ranked .chip[data-number="${target}"]`);
    const rect = element.getBoundingClientRect();
    let placed = false;
    // "To place" keeps its own order, so any position in it will do; in the ranking, the end.
    if (ghost && where === "into") {
        placed = ghost.parentElement === element && (element.id === "unplaced" || !ghost.nextElementSibling);
    }
    if (ghost && where === "before") placed = ghost.nextElementSibling === element;
    if (ghost && where === "after") placed = ghost.previousElementSibling === element;
    const y = {
        before: rect.top + rect.height * 0.25, after: rect.top + rect.height * 0.75, into: rect.bottom - 3,
    }[where];
    return {x: rect.left + rect.width / 2, y: y, placed: placed};
}"""


def drag(page: Page, number: int, *, before: int = 0, after: int = 0, into: str = "") -> None:
    """Drag answer `number`'s chip with the mouse: before/after another answer's chip, or to a list's end.

    SortableJS runs in pointer-event mode, so this is a real press, moves and a release. Like a hand
    guided by the eye, it keeps moving toward the target (which shifts as chips make room) until the
    placeholder is where the drop should go, then lets go.
    """
    where, target = ("before", before) if before else ("after", after) if after else ("into", into)
    box = chip(page, number).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    x, y = x + 6, y + 6
    page.mouse.move(x, y, steps=3)
    for _ in range(200):
        state = page.evaluate(DRAG_STATE, [where, target])
        if state["placed"]:
            break
        dx, dy = state["x"] - x, state["y"] - y
        distance = max(1.0, (dx * dx + dy * dy) ** 0.5)
        step = min(distance, 12.0)
        x, y = x + dx / distance * step, y + dy / distance * step
        page.mouse.move(x, y)
        page.wait_for_timeout(16)
    else:
        raise AssertionError(f"could not drag answer {number} {where} {target}")
    page.wait_for_timeout(100)
    page.mouse.up()
    page.wait_for_timeout(200)  # the drop animation


def ranking_queue(name: str, *, prompt: str, answers: list[str]) -> Queue:
    return make_labeling_queue(name, kind=Queue.Kinds.RANKING, prompts=[(prompt, answers)], ranking_overlap=2)


# ---- a. keyboard only ------------------------------------------------------------------------


def test_rank_nine_answers_with_the_keyboard_only(page: Page):
    labeler = make_user("kim", "labeler")
    queue = ranking_queue("Kids science", prompt=PHOTOSYNTHESIS, answers=PHOTOSYNTHESIS_ANSWERS)
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)
    expect(page.locator(".answer-card")).to_have_count(9)
    expect(page.locator("#unplaced .chip")).to_have_count(9)

    # Place eight answers, tying 8 with 2 (t) on the way.
    keys(page, "5", "Enter", "2", "Enter", "8", "Enter", "t", "1", "Enter", "9", "Enter", "3", "Enter")
    keys(page, "6", "Enter", "4", "Enter", "7", "Enter")
    assert ranked_numbers(page) == [5, 2, 8, 1, 9, 3, 6, 4, 7]
    assert panel_ranks(page) == ["1", "2", "2", "4", "5", "6", "7", "8", "9"]
    expect(chip(page, 8).locator(".chip-tie")).to_have_attribute("aria-pressed", "true")

    # Move 7 two places up; select 3 with the arrow key and rate it.
    keys(page, "Shift+ArrowUp", "Shift+ArrowUp")
    assert ranked_numbers(page) == [5, 2, 8, 1, 9, 3, 7, 6, 4]
    keys(page, "ArrowUp")
    expect(chip(page, 3)).to_have_class(re.compile(r"\bis-selected\b"))
    expect(page.locator('.answer-card[data-number="3"]')).to_have_class(re.compile(r"\bis-selected\b"))
    keys(page, "Shift+Digit2", "5", "Shift+Digit7", "8", "Shift+Digit6", "2", "Shift+Digit6")
    expect(page.locator('.answer-card[data-number="5"] input[value="7"]')).to_be_checked()
    expect(chip(page, 5).locator(".chip-badge--rating")).to_have_text("7/7")

    # Take 9 out again: the ranking is incomplete, so Ctrl+Enter is refused.
    keys(page, "9", "Delete")
    expect(page.locator("#unplaced .chip")).to_have_count(1)
    expect(page.locator("#rank-submit")).to_be_disabled()
    keys(page, "Control+Enter")
    expect(page.locator("#rank-message")).to_contain_text("Place every answer")
    assert Ranking.objects.count() == 0

    # Put 9 back at the bottom and move it up four places, then submit from the keyboard.
    keys(page, "Enter", "Shift+ArrowUp", "Shift+ArrowUp", "Shift+ArrowUp", "Shift+ArrowUp")
    assert ranked_numbers(page) == [5, 2, 8, 1, 9, 3, 7, 6, 4]
    expect(page.locator("#rank-submit")).to_be_enabled()
    keys(page, "Control+Enter")
    page.wait_for_url(lambda url: f"/tasks/{assignment.pk}/" not in url)

    expected = as_ids(assignment, [[5], [2, 8], [1], [9], [3], [7], [6], [4]])
    ranking = Ranking.objects.get(assignment=assignment)
    assert ranking.groups == expected
    ids = numbers_to_ids(assignment)
    labels = {label.answer_id: label for label in AnswerLabel.objects.filter(ranking=ranking)}
    assert {ids[n]: labels[ids[n]].rank for n in ids} == {
        ids[5]: 1, ids[2]: 2, ids[8]: 2, ids[1]: 4, ids[9]: 5, ids[3]: 6, ids[7]: 7, ids[6]: 8, ids[4]: 9
    }
    assert {n: labels[ids[n]].rating for n in ids if labels[ids[n]].rating} == {5: 7, 8: 6, 2: 6, 3: 2}
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    assert assignment.time_spent_ms > 0


# ---- b. drag and drop ------------------------------------------------------------------------


def test_rank_with_drag_and_drop_and_a_tie_made_with_the_mouse(page: Page):
    labeler = make_user("dana", "labeler")
    queue = ranking_queue("Sky", prompt=RAINBOW, answers=RAINBOW_ANSWERS)
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)

    drag(page, 3, into="#ranked")
    assert ranked_numbers(page) == [3]
    drag(page, 1, after=3)
    assert ranked_numbers(page) == [3, 1]
    drag(page, 5, before=3)
    assert ranked_numbers(page) == [5, 3, 1]
    drag(page, 2, into="#ranked")
    drag(page, 4, into="#ranked")
    assert ranked_numbers(page) == [5, 3, 1, 2, 4]
    expect(page.locator("#rank-submit")).to_be_enabled()

    # Reorder within the ranking: 4 goes just below 5.
    drag(page, 4, before=3)
    assert ranked_numbers(page) == [5, 4, 3, 1, 2]

    # Tie 1 with 3 by clicking its tie toggle.
    chip(page, 1).locator(".chip-tie").click()
    expect(chip(page, 1).locator(".chip-tie")).to_have_attribute("aria-pressed", "true")
    assert panel_ranks(page) == ["1", "2", "3", "3", "5"]

    # Dragging an answer back out disables submit; dropped inside the tie group, it joins it.
    drag(page, 2, into="#unplaced")
    expect(page.locator("#rank-submit")).to_be_disabled()
    drag(page, 2, before=1)
    assert ranked_numbers(page) == [5, 4, 3, 2, 1]
    assert panel_ranks(page) == ["1", "2", "3", "3", "3"]
    expect(page.locator("#rank-submit")).to_be_enabled()

    # Rate one answer and flag another with the mouse.
    page.locator('.answer-card[data-number="2"] .rating-option:has(input[value="2"])').click()
    page.locator('.answer-card[data-number="2"] .flag-option:has(input[value="hallucination"])').click()
    page.locator("#rank-submit").click()
    page.wait_for_url(lambda url: f"/tasks/{assignment.pk}/" not in url)

    ranking = Ranking.objects.get(assignment=assignment)
    assert ranking.groups == as_ids(assignment, [[5], [4], [3, 2, 1]])
    answer_2 = AnswerLabel.objects.get(ranking=ranking, answer_id=numbers_to_ids(assignment)[2])
    assert (answer_2.rank, answer_2.rating, answer_2.flags) == (3, 2, ["hallucination"])


# ---- c. incomplete rankings are refused ------------------------------------------------------


def test_submitting_before_every_answer_is_placed_is_refused(page: Page):
    labeler = make_user("lee", "labeler")
    queue = ranking_queue("Sky", prompt=RAINBOW, answers=RAINBOW_ANSWERS)
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)

    submit = page.locator("#rank-submit")
    expect(submit).to_be_disabled()
    expect(page.locator("#rank-message")).to_contain_text("Place 5 more answers")
    keys(page, "4", "Enter", "Shift+Digit3", "2", "Enter")
    expect(submit).to_be_disabled()
    keys(page, "Control+Enter")
    expect(page.locator("#rank-message")).to_contain_text("3 not placed yet")
    assert page.url.endswith(f"/tasks/{assignment.pk}/")

    # Bypassing the page's check: the server refuses too, says why, and keeps the partial work.
    page.evaluate("document.getElementById('rank-form').submit()")
    expect(page.locator(".task-error")).to_contain_text("Place every answer")
    assert ranked_numbers(page) == [4, 2]
    expect(page.locator('.answer-card[data-number="4"] input[value="3"]')).to_be_checked()
    expect(submit).to_be_disabled()

    # Opening the task again (a reload, say) keeps the ranking made so far in this tab.
    page.goto(reverse("task", args=[assignment.pk]))
    assert ranked_numbers(page) == [4, 2]
    assert Ranking.objects.count() == 0
    assert AnswerLabel.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED


def test_unsent_ranking_work_is_there_in_a_new_tab_and_gone_once_sent(page: Page):
    """Unsent work lives in localStorage (static/js/unsent-work.js): a closed tab loses nothing."""
    labeler = make_user("tab", "labeler")
    queue = make_labeling_queue("Tabs", kind=Queue.Kinds.RANKING, prompts=[(RAINBOW, RAINBOW_ANSWERS)] * 2)
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)
    keys(page, "4", "Enter", "2", "Enter", "Digit3")
    page.locator('.answer-card[data-number="2"] .rating-option:has(input[value="6"])').click()
    assert ranked_numbers(page) == [4, 2]

    other_tab = page.context.new_page()
    other_tab.goto(reverse("task", args=[assignment.pk]))
    assert ranked_numbers(other_tab) == [4, 2]
    expect(other_tab.locator('.answer-card[data-number="2"] input[value="6"]')).to_be_checked()
    page.close()

    keys(other_tab, "1", "Enter", "3", "Enter", "5", "Enter", "Control+Enter")
    # The next ranking page opens, and it drops the sent work (its own starts empty).
    first = f"/tasks/{assignment.pk}/"
    other_tab.wait_for_url(lambda url: re.search(r"/tasks/\d+/$", url) is not None and not url.endswith(first))
    assert Ranking.objects.filter(assignment=assignment).count() == 1
    assert ranked_numbers(other_tab) == []
    keys_left = other_tab.evaluate("Object.keys(localStorage).filter(k => k.startsWith('ranking:'))")
    assert f"ranking:{assignment.pk}" not in keys_left and f"ranking:{assignment.pk}:sent" not in keys_left


# ---- d. demonstration ------------------------------------------------------------------------


def test_write_a_demonstration_with_preview_then_the_next_task_opens(page: Page):
    labeler = make_user("ali", "labeler")
    queue = make_labeling_queue(
        "Everyday writing",
        kind=Queue.Kinds.DEMONSTRATION,
        prompts=[(text, []) for text in DEMONSTRATION_PROMPTS],
        instructions=WRITING_INSTRUCTIONS,
    )
    log_in(page, labeler)
    first = open_next(page, queue, TaskKind.DEMONSTRATION)
    expect(page.locator("details.instructions")).to_have_attribute("open", "")
    first_prompt = page.locator(".prompt-text").inner_text()

    # Empty text cannot be submitted.
    submit = page.locator("#demo-submit")
    expect(submit).to_be_disabled()
    page.locator("#demo-text").focus()
    keys(page, "Control+Enter")
    expect(page.locator("#demo-message")).to_contain_text("Write your answer")
    assert page.url.endswith(f"/tasks/{first.pk}/")

    text = "Hi Sam!\n\nCould you water my **tomatoes** while I'm away?\n\n- every other evening\n- can by the door"
    page.locator("#demo-text").fill(text)
    expect(page.locator("#demo-preview strong")).to_have_text("tomatoes")
    expect(page.locator("#demo-preview li")).to_have_count(2)
    expect(page.locator("#demo-count")).to_have_text(f"{len(text)} / 20,000 characters")
    expect(submit).to_be_enabled()

    # A reload keeps the draft and the time spent so far.
    page.wait_for_timeout(1200)
    page.reload()
    expect(page.locator("#demo-text")).to_have_value(text)

    page.locator("#demo-text").press("Control+Enter")
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    page.wait_for_url(lambda url: f"/tasks/{first.pk}/" not in url)
    # The next task opened by itself, with the other prompt and an empty editor.
    expect(page.locator(".prompt-text")).not_to_have_text(first_prompt)
    expect(page.locator("#demo-text")).to_have_value("")

    demonstration = Demonstration.objects.get(assignment=first)
    assert demonstration.text == text  # CRLF from the browser is stored as LF
    first.refresh_from_db()
    assert first.status == Assignment.Status.SUBMITTED
    assert first.time_spent_ms >= 1200


# ---- e. untrusted text -----------------------------------------------------------------------


def test_html_in_prompts_answers_and_previews_is_shown_as_text_and_never_runs(page: Page):
    labeler = make_user("sam", "labeler")
    queue = make_labeling_queue(
        "Untrusted",
        kind=Queue.Kinds.BOTH,
        prompts=[(XSS_PROMPT, [XSS_ANSWER, "A harmless answer."])],
        instructions="Instructions with <script>window.__xss=3</script> in them.",
    )
    log_in(page, labeler)

    open_next(page, queue, TaskKind.RANKING)
    expect(page.locator(".prompt-text")).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator(".prompt-text")).to_contain_text("<img src=x onerror=window.__xss=2>")
    expect(page.locator(".instructions")).to_contain_text("<script>window.__xss=3</script>")
    card = page.locator(".answer-card", has_text="It says")
    expect(card.locator(".answer-body")).to_contain_text("<img src=x onerror=window.__xss=2>")
    number = card.get_attribute("data-number")
    expect(chip(page, int(number)).locator(".chip-text")).to_contain_text("<img src=x")
    assert page.locator("main img, main script:not([src]):not([type='application/json'])").count() == 0
    assert page.evaluate("window.__xss") is None

    open_next(page, queue, TaskKind.DEMONSTRATION)
    expect(page.locator(".prompt-text")).to_contain_text("<script>window.__xss=1</script>")
    page.locator("#demo-text").fill("Typed: <img src=x onerror=window.__xss=2> <script>window.__xss=1</script>")
    expect(page.locator("#demo-preview")).to_contain_text("<img src=x onerror=window.__xss=2>")
    assert page.locator("#demo-preview img, #demo-preview script").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None


# ---- f. skip ---------------------------------------------------------------------------------


def test_skip_with_reason_other_needs_a_note_and_is_stored(page: Page):
    labeler = make_user("max", "labeler")
    queue = ranking_queue("Sky", prompt=RAINBOW, answers=RAINBOW_ANSWERS)
    log_in(page, labeler)
    assignment = open_next(page, queue, TaskKind.RANKING)

    page.get_by_text("Skip this task…").click()
    page.get_by_label("Other (say why)").check()
    # Typing in the note does not trigger the ranking's keyboard shortcuts.
    page.locator("#skip-note").press_sequentially("1 t")
    page.locator("#skip-note").press("Enter")
    expect(page.locator("#ranked .chip")).to_have_count(0)
    expect(page.locator(".chip.is-selected")).to_have_count(0)
    page.locator("#skip-note").fill("")
    page.get_by_role("button", name="Skip task").click()
    # The browser refuses: the note is required for "other".
    assert page.evaluate("document.getElementById('skip-note').validity.valueMissing") is True
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED

    page.locator("#skip-note").fill("Two answers are identical apart from punctuation.")
    page.get_by_role("button", name="Skip task").click()
    page.wait_for_url(lambda url: f"/tasks/{assignment.pk}/" not in url)

    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SKIPPED
    assert assignment.skip_reason == "other"
    assert assignment.skip_note == "Two answers are identical apart from punctuation."
    assert assignment.time_spent_ms is not None


# ---- screenshots -----------------------------------------------------------------------------


def test_screenshots_of_the_labeler_pages(page: Page, tmp_path: Path):
    """Full-page screenshots at 1366x768. SCREENSHOTS_DIR=docs/screenshots writes the documented ones."""
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    labeler = make_user("robin", "labeler")
    ranking = ranking_queue("Kids science", prompt=PHOTOSYNTHESIS, answers=PHOTOSYNTHESIS_ANSWERS)
    writing = make_labeling_queue(
        "Everyday writing",
        kind=Queue.Kinds.DEMONSTRATION,
        prompts=[(DEMONSTRATION_PROMPTS[0], [])],
        instructions=WRITING_INSTRUCTIONS,
        priority=1,
    )
    sky = make_labeling_queue(
        "Sky questions",
        kind=Queue.Kinds.BOTH,
        prompts=[(RAINBOW, RAINBOW_ANSWERS), ("Why do stars twinkle?", RAINBOW_ANSWERS[:3])],
    )
    done = lease_next_task(labeler=labeler, queue=sky, kind=TaskKind.RANKING)
    submit_ranking(assignment_id=done.pk, labeler=labeler, groups=[[pk] for pk in done.answer_order])
    log_in(page, labeler)

    page.goto(reverse("home"))
    expect(page.locator(".queue-table .queue-name")).to_have_count(3)
    page.screenshot(path=folder / "home.png", full_page=True)

    open_next(page, ranking, TaskKind.RANKING)
    keys(page, "5", "Enter", "Shift+Digit6", "1", "Enter", "Shift+Digit6", "t", "9", "Enter", "Shift+Digit5")
    keys(page, "3", "Enter", "Shift+Digit2")
    page.locator('.answer-card[data-number="4"] .flag-option:has(input[value="hallucination"])').click()
    page.locator("body").click(position={"x": 5, "y": 300})  # no focus ring left on the flag
    keys(page, "2")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)
    page.screenshot(path=folder / "rank.png", full_page=True)

    open_next(page, writing, TaskKind.DEMONSTRATION)
    page.locator("#demo-text").fill(
        "Hi Sam,\n\nI'm away **from Saturday to the following Sunday** and my tomato plants would love "
        "some help. Could you water them while I'm gone?\n\n"
        "- Every other evening is plenty (more if it's very hot).\n"
        "- The watering can is by the back door; the tap is on the left.\n"
        "- Please help yourself to any ripe tomatoes!\n\n"
        "Thank you so much. I'll bring you something back from the trip.\n\nBest,\nAlex"
    )
    expect(page.locator("#demo-preview strong")).to_have_count(1)
    page.screenshot(path=folder / "demonstrate.png", full_page=True)

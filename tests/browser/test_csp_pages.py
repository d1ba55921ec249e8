"""The main pages of each role under the Content-Security-Policy, in headless Chromium: the browser reports no
violation (securitypolicyviolation events) and logs nothing to the console, and the pages still work: a keyboard
ranking submits, the demonstration preview renders, the charts draw, Swagger UI lists the operations.

SCREENSHOTS_DIR=docs/screenshots writes the documented screenshot of /api/docs/.
"""
import os
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from core.jobs import JobStatus
from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import Assignment, ExportSnapshot, Queue, Ranking
from rewardtrain.models import GenerationJob, PairDataset, TrainingRun
from tests.conftest import make_user

from .conftest import (
    DEMONSTRATION_PROMPTS,
    PHOTOSYNTHESIS,
    RAINBOW,
    RAINBOW_ANSWERS,
    WRITING_INSTRUCTIONS,
    log_in,
    make_labeling_queue,
)

pytestmark = pytest.mark.browser

# Installed before any page script runs: every violation the browser reports, with what was blocked.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}: ${event.sample}`);
});
"""


@pytest.fixture
def watched(page: Page):
    """The page, with every console message and CSP violation of every page it opens collected."""
    seen: list[str] = []
    page.context.add_init_script(LISTEN)
    # Any console message, but a failed load is named by its response instead (the browser's own
    # /favicon.ico, which this site has none of, is not the site's doing).
    page.on("console", lambda message: message.text.startswith("Failed to load resource")
            or seen.append(f"console {message.type}: {message.text}"))  # fmt: skip
    page.on("response", lambda response: response.status < 400 or response.url.endswith("/favicon.ico")
            or seen.append(f"{response.status} {response.url}"))  # fmt: skip
    page.on("pageerror", lambda error: seen.append(f"error: {error}"))

    def check(path: str) -> None:
        """After the checks on `path`: nothing was reported there."""
        violations = page.evaluate("window.__violations")
        assert violations == [] and seen == [], f"{path}: {violations + seen}"

    page.check_clean = check
    return page


def open_page(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, path
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy, path


def canvas_drawn(page: Page, selector: str) -> bool:
    """Whether Chart.js painted anything on the canvas."""
    return page.locator(selector).evaluate(
        "canvas => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.some(v => v !== 0)"
    )


def background(locator) -> tuple[int, int, int]:
    color = locator.evaluate("element => getComputedStyle(element).backgroundColor")
    return tuple(int(part) for part in re.findall(r"\d+", color)[:3])


def test_labeler_pages_work_under_the_policy(watched: Page):
    labeler = make_user("kim", "labeler")
    ranking = make_labeling_queue("Sky", kind=Queue.Kinds.RANKING, prompts=[(RAINBOW, RAINBOW_ANSWERS[:4])])
    writing = make_labeling_queue("Writing", kind=Queue.Kinds.DEMONSTRATION, instructions=WRITING_INSTRUCTIONS,
                                  prompts=[(DEMONSTRATION_PROMPTS[0], [])])  # fmt: skip
    log_in(watched, labeler)

    open_page(watched, reverse("home"))
    expect(watched.locator(".queue-table .queue-name")).to_have_count(2)
    watched.check_clean("home")

    open_page(watched, reverse("queue-next-task", args=[ranking.pk]) + "?kind=ranking")
    assignment = Assignment.objects.get(labeler=labeler, task__prompt__queue=ranking)
    for number in ("2", "1", "4", "3"):  # rank from the keyboard alone, then submit
        watched.keyboard.press(number)
        watched.keyboard.press("Enter")
    watched.keyboard.press("Control+Enter")
    watched.wait_for_url(lambda url: f"/tasks/{assignment.pk}/" not in url)
    assert Ranking.objects.filter(assignment=assignment).exists()
    watched.check_clean("rank page")

    open_page(watched, reverse("queue-next-task", args=[writing.pk]) + "?kind=demonstration")
    # The live preview (HTML from the server, set by script) with a Markdown table: aligned columns are classes.
    watched.locator("#demo-text").fill("| name | amount |\n|:--|--:|\n| **water** | 2 |")
    expect(watched.locator("#demo-preview td.align-right")).to_have_text("2")
    expect(watched.locator("#demo-preview strong")).to_have_text("water")
    watched.check_clean("demonstration page")


def test_admin_pages_work_under_the_policy(watched: Page):
    queue = make_labeling_queue("Sky", kind=Queue.Kinds.RANKING, prompts=[(RAINBOW, RAINBOW_ANSWERS)],
                                ranking_overlap=2)  # fmt: skip
    for name, flip in (("amira", False), ("bo", True)):
        user = make_user(name, "labeler")
        assignment = lease_next_task(labeler=user, queue=queue)
        order = sorted(assignment.answer_order, reverse=flip)
        submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in order])
    prompt = queue.prompts.get()
    log_in(watched, make_user("ada", "admin"))

    open_page(watched, reverse("manage-queues"))
    watched.wait_for_function("() => window.Chart && Object.keys(Chart.instances).length > 0")
    assert canvas_drawn(watched, ".labels-chart canvas")
    watched.check_clean("queue list")

    open_page(watched, reverse("manage-queue-agreement", args=[queue.pk]))
    expect(watched.locator("#labeler-table")).to_contain_text("amira")
    watched.wait_for_function("() => window.Chart && Object.keys(Chart.instances).length > 0")
    assert canvas_drawn(watched, "#heat-map-chart")
    watched.get_by_text("The same figures as a table").click()  # its colours are classes now
    red, green, _ = background(watched.locator("#heat-map td.heat-cell").first)
    assert red > green  # amira and bo ranked in opposite orders: agreement 0, red
    watched.check_clean("agreement page")

    open_page(watched, reverse("manage-review", args=[queue.pk]))
    expect(watched.locator("#review-table tbody tr")).to_have_count(1)
    watched.check_clean("review list")

    open_page(watched, reverse("manage-review-prompt", args=[queue.pk, prompt.pk]))
    red, green, _ = background(watched.locator("#rankings td.rank-cell.hue-12").first)
    assert green > red  # the best rank is green
    watched.check_clean("review page")


def test_ml_pages_and_the_api_docs_work_under_the_policy(watched: Page, tmp_path: Path):
    queue = make_labeling_queue("Kids science", kind=Queue.Kinds.RANKING, prompts=[(PHOTOSYNTHESIS, ["a", "b"])])
    dataset = PairDataset.objects.create(name="helpful", version=1, status=JobStatus.SUCCEEDED, rows=40)
    history = [{"step": step, "epoch": 0, "train_loss": 0.7 - step / 200} for step in range(10, 110, 10)]
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.RUNNING, step=100,
                                     total_steps=300, progress_percent=33.3, history=history)  # fmt: skip
    snapshot = ExportSnapshot.objects.create(name="pairs", version=1, dataset="pairs", format="jsonl",
                                             status="succeeded", finished_at=timezone.now())  # fmt: skip
    job = GenerationJob.objects.create(queue=queue, model_name="smollm2", answers_per_prompt=2, prompts_total=4,
                                       prompts_done=1)  # fmt: skip
    log_in(watched, make_user("mlstaff", "ml"))

    for name, args in [("ml-datasets", []), ("ml-runs", []), ("ml-exports", []), ("ml-export", [snapshot.pk]),
                       ("ml-generation-jobs", []), ("ml-models", [])]:  # fmt: skip
        open_page(watched, reverse(name, args=args))
        expect(watched.locator("main h1")).to_be_visible()
        watched.check_clean(name)

    open_page(watched, reverse("ml-generation-job", args=[job.pk]))
    expect(watched.locator("progress")).to_have_js_property("value", 25)
    watched.check_clean("generation job")

    open_page(watched, reverse("ml-run", args=[run.pk]))
    expect(watched.locator("#run-progress-bar")).to_have_js_property("value", 33)
    watched.wait_for_function("() => window.Chart && Object.keys(Chart.instances).length > 0")
    assert canvas_drawn(watched, "#learning-curve")
    watched.check_clean("run page")

    open_page(watched, reverse("api-docs"))
    expect(watched.locator(".opblock").first).to_be_visible(timeout=20_000)
    expect(watched.locator(".opblock-summary-path", has_text="/api/v1/exports/").first).to_be_visible()
    watched.check_clean("api docs")
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    watched.screenshot(path=folder / "api_docs.png", full_page=False)

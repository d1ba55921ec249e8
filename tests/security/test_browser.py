"""Hostile text in headless Chromium: the rank page, the admin's queue, agreement and review pages,
and the ML pages load with it and nothing runs (no dialog, no window.__pwned, no injected element)."""
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


def assert_inert(page: Page, dialogs: list[str]) -> None:
    page.wait_for_timeout(300)  # onerror of a broken image fires after load
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("[id^=pwned], main img[src], main iframe, main svg script").count() == 0
    assert page.locator("a[href^='javascript:' i], a[href^='data:' i]").count() == 0


@pytest.mark.django_db(transaction=True)
def test_hostile_text_runs_nowhere(page: Page, world):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    log_in(page, world["users"]["labeler"])
    page.goto(f"/tasks/{world['assignment_id']}/")
    expect(page.locator(".prompt-text")).to_contain_text("<script>window.__pwned=1;alert(1)</script>")
    expect(page.locator(".instructions")).to_contain_text("[click me](javascript:window.__pwned=5)")
    expect(page.locator(".answer-body").first).to_contain_text('<img src=x onerror="window.__pwned=2"')
    assert_inert(page, dialogs)
    page.context.clear_cookies()

    log_in(page, world["users"]["admin"])
    queue, prompt = world["queue_id"], world["prompt_id"]
    for path in ["/manage/queues/", f"/manage/queues/{queue}/", f"/manage/queues/{queue}/agreement/",
                 f"/manage/queues/{queue}/review/", f"/manage/queues/{queue}/review/{prompt}/",
                 f"/manage/imports/{world['job_id']}/"]:  # fmt: skip
        page.goto(path)
        expect(page.locator("main")).to_contain_text("<script>window.__pwned=1")
        assert_inert(page, dialogs)
    page.context.clear_cookies()

    log_in(page, world["users"]["ml"])
    for path in [f"/ml/generation/{world['generation_job_id']}/", f"/ml/exports/{world['snapshot_id']}/",
                 f"/ml/runs/{world['run_id']}/", "/ml/tokens/"]:  # fmt: skip
        page.goto(path)
        expect(page.locator("main")).to_contain_text("<script>window.__pwned=1")
        assert_inert(page, dialogs)

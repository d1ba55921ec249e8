"""ML staff export a dataset from the exports page in Chromium and download the finished file."""
import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import ExportSnapshot, Queue
from tests.conftest import make_user

from .conftest import PHOTOSYNTHESIS, PHOTOSYNTHESIS_ANSWERS, RAINBOW, RAINBOW_ANSWERS, log_in, make_labeling_queue

pytestmark = pytest.mark.browser



@pytest.fixture
def ranked_queue(db):
    queue = make_labeling_queue(
        "Helpfulness <b>export</b>",
        kind=Queue.Kinds.RANKING,
        prompts=[(PHOTOSYNTHESIS, PHOTOSYNTHESIS_ANSWERS[:4]), (RAINBOW, RAINBOW_ANSWERS[:4])],
        ranking_overlap=2,
    )
    for name in ("amira", "bo"):
        user = make_user(name, "labeler")
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            submit_ranking(
                assignment_id=assignment.pk, labeler=user, groups=[[pk] for pk in sorted(assignment.answer_order)]
            )
    return queue


def test_ml_staff_export_pairs_and_download_the_file(page: Page, ranked_queue, eager, settings, tmp_path: Path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    log_in(page, make_user("mira", "ml"))
    page.goto("/ml/exports/")
    page.fill("#id_name", "helpful-pairs")
    page.select_option("#id_dataset", "pairs")
    page.select_option("#id_format", "parquet")
    queue_box = page.get_by_label(ranked_queue.name)  # the name shows as text, its markup inert
    queue_box.focus()
    page.keyboard.press("Space")
    expect(queue_box).to_be_checked()
    page.get_by_role("button", name="Export").click()

    snapshot = ExportSnapshot.objects.get()
    page.wait_for_url(f"**/ml/exports/{snapshot.pk}/")
    snapshot.refresh_from_db()
    assert (snapshot.status, snapshot.name, snapshot.version) == ("succeeded", "helpful-pairs", 1)
    expect(page.locator("#export-status")).to_have_text("succeeded")
    expect(page.locator("td code", has_text=snapshot.sha256)).to_be_visible()
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "export.png"), full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download helpful-pairs-v1.parquet").click()
    saved = tmp_path / "downloaded.parquet"
    download_info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == snapshot.sha256
    pairs = pd.read_parquet(saved)
    # Two labelers × two prompts × 6 pairs of 4 untied answers.
    assert len(pairs) == snapshot.rows == 24
    assert {"prompt", "chosen", "rejected", "margin", "dataset_version"} <= set(pairs.columns)
    assert set(pairs["dataset_version"]) == {"helpful-pairs-v1"}

    page.goto("/ml/exports/")
    row = page.locator("#exports tbody tr").first
    expect(row).to_contain_text("helpful-pairs-v1")
    expect(row).to_contain_text("mira")
    expect(row).to_contain_text(snapshot.sha256[:12])

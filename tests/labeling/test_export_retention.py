"""Export retention: files older than EXPORT_RETENTION_DAYS are deleted by beat's task or the command, the record
stays marked expired, and the pages and API say so instead of offering a broken download."""
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.jobs import JobStatus
from core.models import AuditEvent
from labeling import tasks
from labeling.datasets import exports
from labeling.models import ExportSnapshot
from rewardtrain.models import PairDataset
from tests.conftest import make_queue, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.EXPORT_RETENTION_DAYS = 30


def written(name: str, *, days_ago: float, status=ExportSnapshot.Status.SUCCEEDED, out: Path | None = None):
    """A snapshot whose file and card were written `days_ago` days ago (under ARTIFACTS_DIR unless `out`)."""
    finished = timezone.now() - timedelta(days=days_ago)
    snapshot = ExportSnapshot.objects.create(name=name, version=1, dataset="sft", format="jsonl", status=status,
                                             rows=1, bytes=3, sha256="ab" * 32, finished_at=finished)  # fmt: skip
    snapshot.queues.add(make_queue(f"Q {name}", prompts=1, answers=2))
    path = out or exports.snapshot_path(snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}\n")
    path.with_name("README.md").write_text("# card\n")
    root = Path(django_settings.ARTIFACTS_DIR)
    stored = (lambda p: str(p) if out else str(p.relative_to(root)))  # noqa: E731  as build_export stores them
    snapshot.file, snapshot.card = stored(path), stored(path.with_name("README.md"))
    snapshot.save()
    return snapshot


def test_an_old_snapshots_file_and_card_go_and_its_record_says_so_while_younger_ones_stay():
    old, young = written("old", days_ago=31), written("young", days_ago=29)
    failed = written("failed", days_ago=90, status=ExportSnapshot.Status.FAILED)  # no real file to own: untouched
    old_dir = exports.artifact(old.file).parent

    assert [s.pk for s in exports.prune_exports()] == [old.pk]

    old.refresh_from_db()
    assert old.status == "expired" and old.retention_days == 30 and old.expired_at is not None
    assert (old.rows, old.sha256, old.file) == (1, "ab" * 32, "exports/old-v1/old-v1.jsonl")  # the record stays
    assert not exports.artifact(old.file).exists() and not exports.artifact(old.card).exists()
    assert not old_dir.exists()  # its own directory, emptied, goes too
    young.refresh_from_db()
    assert young.status == "succeeded" and exports.artifact(young.file).is_file()
    failed.refresh_from_db()
    assert failed.status == "failed"
    [event] = AuditEvent.objects.filter(action="export.expire")
    assert (event.actor, event.target_repr, event.detail["retention_days"]) == (None, "old-v1", 30)
    assert exports.prune_exports() == []  # nothing twice


def test_zero_days_keeps_every_file(settings):
    old = written("old", days_ago=3650)
    assert exports.prune_exports(days=0) == []
    settings.EXPORT_RETENTION_DAYS = 0
    assert exports.prune_exports() == []
    old.refresh_from_db()
    assert old.status == "succeeded" and exports.artifact(old.file).is_file()


def test_a_file_the_command_wrote_outside_artifacts_dir_is_the_operators_and_stays(tmp_path):
    mine = written("mine", days_ago=400, out=tmp_path / "elsewhere" / "mine.jsonl")
    assert exports.prune_exports() == []
    mine.refresh_from_db()
    assert mine.status == "succeeded" and Path(mine.file).is_file()


def test_pair_datasets_are_never_pruned():
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED, file="datasets/d-v1.parquet",
                                         finished_at=timezone.now() - timedelta(days=400))  # fmt: skip
    path = Path(django_settings.ARTIFACTS_DIR) / dataset.file
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1")
    exports.prune_exports()
    dataset.refresh_from_db()
    assert dataset.status == JobStatus.SUCCEEDED and path.is_file()


def test_the_pages_and_the_api_say_an_expired_export_was_removed_instead_of_offering_it(client):
    old = written("old", days_ago=31)
    exports.prune_exports()
    ml = make_user("mlstaff", "ml")
    client.force_login(ml)

    listing = client.get(reverse("ml-exports")).content.decode()
    assert "expired (removed after 30 days)" in listing
    assert reverse("ml-export-download", args=[old.pk]) not in listing
    detail = client.get(reverse("ml-export", args=[old.pk])).content.decode()
    assert "by the retention rule (exports are kept 30 days); export it again" in detail
    assert reverse("ml-export-download", args=[old.pk]) not in detail
    for name in ("ml-export-download", "ml-export-card"):  # an old link: 410 and the page saying why
        response = client.get(reverse(name, args=[old.pk]))
        assert response.status_code == 410 and "by the retention rule" in response.content.decode()

    api = APIClient()
    api.force_login(ml)
    response = api.get(f"/api/v1/exports/{old.pk}/download/")
    assert response.status_code == 410
    assert response.json()["detail"].startswith("The file of old-v1 was removed on ")
    record = api.get(f"/api/v1/exports/{old.pk}/").json()
    assert record["status"] == "expired" and record["retention_days"] == 30 and record["expired_at"]


def test_beat_prunes_every_hour_and_the_command_does_it_now():
    assert django_settings.CELERY_BEAT_SCHEDULE["prune-exports"] == {
        "task": "labeling.tasks.prune_exports_task", "schedule": 3600.0,
    }  # fmt: skip
    written("a", days_ago=31)
    assert tasks.prune_exports_task() == 1

    written("b", days_ago=10)
    out = StringIO()
    call_command("prune_exports", "--days", "7", stdout=out)
    assert "removed exports/b-v1/b-v1.jsonl" in out.getvalue() and "1 export snapshot expired." in out.getvalue()

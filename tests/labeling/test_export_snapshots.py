"""Export snapshots: asked for (page, API, command), built by the worker's task into a versioned file whose
record holds its rows and SHA-256; the minimum-agreement and gold filters; downloads; who may do what."""
import hashlib
import json

import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from labeling import tasks
from labeling.assignment.services import lease_next_task, submit_demonstration, submit_ranking
from labeling.datasets import exports
from labeling.models import ExportSnapshot, Queue, Task, TaskKind
from tests.conftest import make_queue, make_user

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"


@pytest.fixture
def eager(monkeypatch, django_capture_on_commit_callbacks):
    """`with eager():` messages sent inside run the task here once the block ends, as if committed and sent
    to a worker (the test's transaction never commits)."""
    monkeypatch.setattr(tasks.build_export_task, "delay", lambda snapshot_id: tasks.build_export_task(snapshot_id))
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def unsent(monkeypatch):
    """The worker never gets the message: snapshots stay queued."""
    sent = []
    monkeypatch.setattr(tasks.build_export_task, "delay", lambda snapshot_id: sent.append(snapshot_id))
    return sent


def label_everything(queue: Queue, users, order) -> None:
    """Each user takes every task of the queue: demonstrations say who wrote them, rankings follow order(user, ids)."""
    for user in users:
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            if assignment.task.kind == TaskKind.DEMONSTRATION:
                submit_demonstration(assignment_id=assignment.pk, labeler=user, text=f"written by {user.username}")
            else:
                groups = [[pk] for pk in order(user, sorted(assignment.answer_order))]
                submit_ranking(assignment_id=assignment.pk, labeler=user, groups=groups)


@pytest.fixture
def agreeing(db):
    """4 prompts of 3 answers, demonstrated and ranked by agree0, agree1 and contrary, who reverses the others.

    The first prompt's ranking task is then made gold with the others' order: contrary's gold accuracy is 0
    and their pooled agreement 0, the others' 0.5 (full with each other, none with contrary).
    """
    queue = make_queue(f"Agree {HOSTILE}", prompts=4, answers=3, task_kind=Queue.Kinds.BOTH, ranking_overlap=3,
                       demonstration_overlap=3)  # fmt: skip
    users = [make_user("agree0", "labeler"), make_user("agree1", "labeler"), make_user("contrary", "labeler")]
    label_everything(queue, users, lambda user, ids: ids[::-1] if user.username == "contrary" else ids)
    gold = Task.objects.filter(prompt__queue=queue, kind=TaskKind.RANKING).order_by("prompt_id").first()
    answer_ids = sorted(gold.prompt.answers.values_list("pk", flat=True))
    Task.objects.filter(pk=gold.pk).update(gold_groups=[[pk] for pk in answer_ids])
    return queue


def read(snapshot: ExportSnapshot) -> pd.DataFrame:
    path = exports.artifact(snapshot.file)
    return pd.read_parquet(path) if snapshot.format == "parquet" else pd.read_json(path, lines=True)


def test_a_requested_export_is_built_into_a_versioned_file_whose_record_holds_its_figures(agreeing, eager):
    ml = make_user("mlstaff", "ml")
    with eager():
        first = exports.request_export(name="support-pairs", dataset="pairs", fmt="parquet", queues=[agreeing],
                                       filters={"exclude_flagged": True}, user=ml)  # fmt: skip
    first.refresh_from_db()
    assert first.status == ExportSnapshot.Status.SUCCEEDED, first.error
    assert first.file == "exports/support-pairs-v1/support-pairs-v1.parquet"
    path = exports.artifact(first.file)
    data = path.read_bytes()
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.bytes == len(data)
    frame = read(first)
    # 3 non-gold prompts x 3 labelers x 3 pairs each (3 answers, no ties).
    assert first.rows == len(frame) == 27
    assert set(frame["dataset_version"]) == {"support-pairs-v1"}
    assert first.started_at <= first.finished_at
    card = exports.artifact(first.card).read_text()
    assert exports.artifact(first.card) == path.with_name("README.md")
    assert "# support-pairs-v1" in card and "by mlstaff" in card and "prompts with a flagged answer left out" in card
    assert f"27 rows, SHA-256 `{first.sha256}`" in card

    with eager():
        second = exports.request_export(name="support-pairs", dataset="sft", fmt="jsonl", queues=[agreeing],
                                        filters={}, user=ml)  # fmt: skip
        other = exports.request_export(name="other", dataset="comparisons", fmt="csv", queues=[agreeing], filters={})
    assert (second.version, other.version) == (2, 1)
    second.refresh_from_db()
    assert second.rows == 12 and second.file == "exports/support-pairs-v2/support-pairs-v2.jsonl"

    # A redelivered message leaves a finished snapshot as it is.
    path.write_bytes(b"changed")
    tasks.build_export_task(first.pk)
    assert path.read_bytes() == b"changed"
    first.refresh_from_db()
    assert first.sha256 == hashlib.sha256(data).hexdigest()


def test_min_agreement_and_min_gold_accuracy_leave_the_low_labeler_out(agreeing):
    kept = {"agree0", "agree1"}
    for dataset, filters, rows in [
        ("pairs", {"min_agreement": 0.4}, 2 * 3 * 3),
        ("pairs", {"min_gold_accuracy": 0.5}, 2 * 3 * 3),
        ("sft", {"min_agreement": 0.4}, 2 * 4),  # demonstrations of a labeler below the minimum go too
        ("comparisons", {"min_agreement": 0.4}, 3),
    ]:
        snapshot = exports.record_export(name=f"low-{dataset}", dataset=dataset, fmt="jsonl", queues=[agreeing],
                                         filters=filters)  # fmt: skip
        snapshot = exports.build_export(snapshot)
        frame = read(snapshot)
        assert snapshot.rows == len(frame) == rows, (dataset, filters)
        if dataset == "comparisons":
            assert all({r["labeler"] for r in rankings} == kept for rankings in frame["rankings"])
        else:
            assert set(frame["labeler"]) == kept
        card = exports.artifact(snapshot.card).read_text()
        key = next(iter(filters))
        assert f"| contrary | {key} | 0.000 |" in card and "agree0 |" not in card
    # Without a minimum, contrary is in.
    everyone = exports.build_export(
        exports.record_export(name="all", dataset="pairs", fmt="jsonl", queues=[agreeing], filters={})
    )
    assert set(read(everyone)["labeler"]) == kept | {"contrary"} and everyone.rows == 27


def test_a_failing_build_is_marked_failed_with_the_reason_and_leaves_no_file(agreeing, eager, monkeypatch):
    def full_disk(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(exports, "write_rows", full_disk)
    with eager():
        snapshot = exports.request_export(name="broken", dataset="pairs", fmt="csv", queues=[agreeing], filters={})
    snapshot.refresh_from_db()
    assert snapshot.status == ExportSnapshot.Status.FAILED and snapshot.finished_at is not None
    assert snapshot.error == "OSError: No space left on device"
    assert not list(exports.snapshot_path(snapshot).parent.iterdir())


def test_an_export_asked_for_while_the_broker_is_down_fails_with_the_reason(
    agreeing, broker_down, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = exports.request_export(name="later", dataset="sft", fmt="jsonl", queues=[agreeing], filters={})
    snapshot.refresh_from_db()
    assert snapshot.status == ExportSnapshot.Status.FAILED and "task queue could not be reached" in snapshot.error


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "Not a slug!"}, "name must be a slug"),
        ({"dataset": "votes"}, "Unknown dataset 'votes'"),
        ({"fmt": "xml"}, "Unknown format 'xml'"),
        ({"queues": []}, "Choose at least one queue"),
        ({"filters": {"date_from": "2026-13-01"}}, "date_from must be a date"),
        ({"filters": {"min_agreement": 2}}, "min_agreement must be a number from 0 to 1"),
        ({"filters": {"source": "consensus"}}, "Exports take no filter 'source'"),
    ],
)
def test_the_service_checks_everything_before_recording(db, unsent, fields, message):
    queue = make_queue("Q", prompts=1, answers=2)
    asked = {"name": "x", "dataset": "pairs", "fmt": "jsonl", "queues": [queue], "filters": {}} | fields
    with pytest.raises(ValueError, match=message):
        exports.request_export(**asked)
    assert not ExportSnapshot.objects.exists() and not unsent


def test_the_command_records_a_snapshot_written_where_it_says(agreeing, tmp_path, client):
    out = tmp_path / "mine" / "pairs.jsonl"
    call_command("export", "pairs", "--queue", str(agreeing.pk), "--format", "jsonl", "--out", str(out),
                 "--name", "cli-pairs", "--min-agreement", "0.4")  # fmt: skip
    snapshot = ExportSnapshot.objects.get()
    assert (str(snapshot), snapshot.status, snapshot.created_by) == ("cli-pairs-v1", "succeeded", None)
    assert snapshot.file == str(out.resolve()) and snapshot.card == str(out.with_name("README.md").resolve())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == snapshot.rows == 18 and {row["dataset_version"] for row in rows} == {"cli-pairs-v1"}
    assert snapshot.filters == {"exclude_skipped": False, "exclude_flagged": False, "min_agreement": 0.4}
    client.force_login(make_user("ml1", "ml"))
    assert b"".join(client.get(reverse("ml-export-download", args=[snapshot.pk])).streaming_content) == out.read_bytes()


# Pages --------------------------------------------------------------------------------------------


def test_the_pages_ask_for_an_export_list_it_and_serve_its_files(agreeing, eager, client):
    ml = make_user("mlstaff", "ml")
    client.force_login(ml)
    page = client.get(reverse("ml-exports"))
    assert page.status_code == 200 and b"No export yet" in page.content
    labeler = make_user("pick", "labeler")
    with eager():
        response = client.post(reverse("ml-exports"), {
            "name": "page-export", "dataset": "pairs", "format": "parquet", "queues": [agreeing.pk],
            "labelers": [labeler.pk], "exclude_skipped": "on", "min_agreement": "0.4",
        })  # fmt: skip
    snapshot = ExportSnapshot.objects.get()
    assert response.status_code == 302 and response.url == reverse("ml-export", args=[snapshot.pk])
    assert snapshot.status == "succeeded" and snapshot.created_by == ml
    assert snapshot.filters == {"labeler_ids": [labeler.pk], "exclude_skipped": True, "exclude_flagged": False,
                                "min_agreement": 0.4}  # fmt: skip

    listing = client.get(reverse("ml-exports")).content.decode()
    assert "page-export-v1" in listing and "by mlstaff" in listing and "only labelers pick" in listing
    assert f'title="{snapshot.sha256}"' in listing and reverse("ml-export-download", args=[snapshot.pk]) in listing
    assert HOSTILE not in listing and "&lt;script&gt;" in listing

    detail = client.get(reverse("ml-export", args=[snapshot.pk])).content.decode()
    assert 'id="export-card"' in detail and "page-export-v1" in detail and 'http-equiv="refresh"' not in detail
    assert HOSTILE not in detail  # the queue's name, in the card's tables too

    download = client.get(reverse("ml-export-download", args=[snapshot.pk]))
    assert download["Content-Type"] == "application/vnd.apache.parquet"
    assert download["Content-Disposition"] == 'attachment; filename="page-export-v1.parquet"'
    assert b"".join(download.streaming_content) == exports.artifact(snapshot.file).read_bytes()
    card = client.get(reverse("ml-export-card", args=[snapshot.pk]))
    assert card["Content-Type"].startswith("text/markdown")
    assert b"".join(card.streaming_content) == exports.artifact(snapshot.card).read_bytes()


def test_the_export_list_reads_the_labelers_names_in_one_query_however_many_exports(agreeing, unsent, client):
    client.force_login(make_user("mlstaff", "ml"))
    labelers = {user.username: user.pk for user in User.objects.filter(username__in=["agree0", "agree1"])}

    def record(n: int) -> None:  # odd n: both labelers; even n: agree0 alone
        chosen = [labelers["agree0"], labelers["agree1"]][: 1 + n % 2]
        exports.record_export(name=f"names-{n}", dataset="sft", fmt="jsonl", queues=[agreeing],
                              filters={"labeler_ids": chosen})  # fmt: skip

    record(0)
    client.get(reverse("ml-exports"))  # the session and the cached user are read once, on the first page
    with CaptureQueriesContext(connection) as one:
        assert client.get(reverse("ml-exports")).status_code == 200
    for n in range(1, 5):
        record(n)
    with CaptureQueriesContext(connection) as five:
        page = client.get(reverse("ml-exports")).content.decode()
    assert len(five) == len(one)
    assert page.count("only labelers agree0, agree1") == 2 and page.count("only labelers agree0<") == 3


def test_the_form_names_bad_fields_and_records_nothing(agreeing, unsent, client):
    client.force_login(make_user("mlstaff", "ml"))
    response = client.post(reverse("ml-exports"), {
        "name": "bad name", "dataset": "votes", "format": "parquet", "queues": [agreeing.pk], "min_agreement": "2",
    })  # fmt: skip
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"name", "dataset", "min_agreement"}
    assert not ExportSnapshot.objects.exists() and not unsent


def test_an_unfinished_export_refreshes_and_serves_nothing(agreeing, unsent, client):
    client.force_login(make_user("mlstaff", "ml"))
    snapshot = exports.request_export(name="waiting", dataset="sft", fmt="csv", queues=[agreeing], filters={})
    detail = client.get(reverse("ml-export", args=[snapshot.pk])).content.decode()
    assert 'http-equiv="refresh"' in detail and "queued" in detail
    assert client.get(reverse("ml-export-download", args=[snapshot.pk])).status_code == 404
    assert client.get(reverse("ml-export-card", args=[snapshot.pk])).status_code == 404


def test_only_ml_staff_reach_the_pages(agreeing, unsent, client):
    snapshot = exports.request_export(name="secret", dataset="sft", fmt="csv", queues=[agreeing], filters={})
    urls = [reverse("ml-exports")] + [
        reverse(name, args=[snapshot.pk]) for name in ("ml-export", "ml-export-download", "ml-export-card")
    ]
    for url in urls:
        assert client.get(url).url.startswith(reverse("login"))
    client.force_login(make_user("admin1", "admin", "labeler"))
    for url in urls:
        assert client.get(url).status_code == 403
    assert client.post(reverse("ml-exports"), {"name": "x"}).status_code == 403
    assert ExportSnapshot.objects.count() == 1


# API ----------------------------------------------------------------------------------------------


@pytest.fixture
def api(db):
    client = APIClient()
    client.force_authenticate(make_user("mlapi", "ml"))
    return client


def test_the_api_creates_lists_and_downloads_exports(agreeing, eager, api):
    with eager():
        response = api.post("/api/v1/exports/", {
            "name": "api-pairs", "dataset": "pairs", "format": "jsonl", "queues": [agreeing.pk],
            "filters": {"min_gold_accuracy": 0.5},
        }, format="json")  # fmt: skip
    assert response.status_code == 201, response.json()
    created = response.json()
    assert (created["label"], created["version"], created["status"]) == ("api-pairs-v1", 1, "queued")
    snapshot = ExportSnapshot.objects.get(pk=created["id"])
    assert snapshot.status == "succeeded" and snapshot.created_by.username == "mlapi"

    exports.build_export(exports.record_export(name="api-sft", dataset="sft", fmt="csv", queues=[agreeing],
                                               filters={}))  # fmt: skip
    listed = api.get("/api/v1/exports/").json()["results"]
    assert [item["label"] for item in listed] == ["api-sft-v1", "api-pairs-v1"]
    only = api.get("/api/v1/exports/", {"dataset": "pairs", "status": "succeeded"}).json()["results"]
    assert [item["label"] for item in only] == ["api-pairs-v1"]
    assert api.get("/api/v1/exports/", {"name": "nope"}).json()["results"] == []
    one = api.get(f"/api/v1/exports/{snapshot.pk}/").json()
    assert one["rows"] == 18 and one["sha256"] == snapshot.sha256 and one["filters"] == {
        "exclude_skipped": False, "exclude_flagged": False, "min_gold_accuracy": 0.5
    }  # fmt: skip

    download = api.get(f"/api/v1/exports/{snapshot.pk}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/jsonl"
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == snapshot.sha256


def test_the_api_refuses_downloads_of_unfinished_exports_and_non_ml_users(agreeing, unsent, api):
    snapshot = exports.request_export(name="slow", dataset="sft", fmt="csv", queues=[agreeing], filters={})
    response = api.get(f"/api/v1/exports/{snapshot.pk}/download/")
    assert response.status_code == 409 and "slow-v1 is queued" in response.json()["detail"]
    labeler = APIClient()
    labeler.force_authenticate(make_user("lab", "labeler"))
    assert labeler.get("/api/v1/exports/").status_code == 403
    assert labeler.post("/api/v1/exports/", {}, format="json").status_code == 403
    assert APIClient().get("/api/v1/exports/").status_code == 401


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"dataset": "votes"}, "dataset", "not a valid choice"),
        ({"format": "xml"}, "format", "not a valid choice"),
        ({"name": "no spaces please"}, "name", "slug"),
        ({"queues": [999_999]}, "queues", "Invalid pk"),
        ({"queues": []}, "queues", "may not be empty"),
        ({"filters": {"date_from": "2026-02-30"}}, "filters", "date_from must be a date"),
        ({"filters": {"min_agreement": 2}}, "filters", "min_agreement must be a number from 0 to 1"),
        ({"filters": {"min_rankings": 2}}, "filters", "Exports take no filter 'min_rankings'"),
        ({"colour": "blue"}, "colour", "Unknown field 'colour'"),
    ],
)
def test_the_api_names_the_bad_field_and_records_nothing(agreeing, unsent, api, change, field, message):
    body = {"name": "bad", "dataset": "pairs", "format": "jsonl", "queues": [agreeing.pk]} | change
    response = api.post("/api/v1/exports/", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field] and message in " ".join(errors[field])
    assert not ExportSnapshot.objects.exists() and not unsent


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: concurrent writers")
def test_exports_asked_for_at_once_get_distinct_versions(transactional_db):
    from tests.labeling.test_concurrency import run_together

    queue = make_queue("Race", prompts=1, answers=2)

    def ask():
        return exports.record_export(name="race", dataset="sft", fmt="jsonl", queues=[queue], filters={}).version

    # The first versions of a new name (nothing to lock yet), then more of a name that has versions.
    assert sorted(run_together([ask] * 4)) == [1, 2, 3, 4]
    assert sorted(run_together([ask] * 4)) == [5, 6, 7, 8]

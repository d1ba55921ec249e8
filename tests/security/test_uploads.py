"""Malformed and oversized uploads, through the upload page and the worker: a clear error naming the
line and the field, nothing imported, and a bounded read.

The form's size check and the reader's per-line cap are also tested in tests/labeling/test_pages.py
(test_import_page_refuses_wrong_files) and tests/labeling/test_importing.py
(test_a_line_longer_than_max_bytes_is_not_read_whole).
"""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.celery import app as celery_app
from labeling.models import ImportJob
from tests.conftest import make_queue
from tests.security.conftest import HOSTILE, injected

pytestmark = pytest.mark.django_db


@pytest.fixture
def upload(client, queue_admin, settings, tmp_path, django_capture_on_commit_callbacks):
    """Uploads a file on the queue page, lets the import task run, and returns the job and its page."""
    settings.MEDIA_ROOT = tmp_path
    queue = make_queue("Up", prompts=0)
    client.force_login(queue_admin)

    def send(name: str, data: bytes) -> tuple[ImportJob | None, str]:
        celery_app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                response = client.post(f"/manage/queues/{queue.pk}/import/", {"file": SimpleUploadedFile(name, data)})
        finally:
            celery_app.conf.task_always_eager = False
        assert response.status_code == 302
        response = client.get(response.url)  # the job's page, once the task has run
        job = ImportJob.objects.filter(queue=queue).order_by("-pk").first()
        return job, response.content.decode()

    send.queue = queue
    return send


def jsonl(*rows) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


@pytest.mark.parametrize(
    ("name", "data", "line", "reason"),
    [
        ("p.jsonl", jsonl({"prompt": "ok"}, {"prompt": "bad\x00nul"}), 2, "The prompt contains a NUL character."),
        ("p.jsonl", b'{"prompt": "ok"}\n{"prompt": "bad\x00"}\n', 2, "Invalid JSON"),
        ("p.csv", b"prompt\nok\nbad\x00nul\n", 3, "The prompt contains a NUL character."),
        ("p.jsonl", b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n', 2, "Not valid UTF-8 (byte 16 of the line)."),
        ("p.csv", b"prompt\n\xff\xfe\n", 2, "Not valid UTF-8"),
        ("p.jsonl", jsonl({"prompt": "ok", "answers": ["a", "b\x00"]}), 1, "The answer 2 contains a NUL character."),
        ("p.jsonl", jsonl({"prompt": HOSTILE, "meta": {"k": "\x00"}}), 1, "The meta contains a NUL character."),
    ],
)
def test_nul_bytes_and_invalid_utf8_get_a_clear_error_and_import_nothing(upload, name, data, line, reason):
    job, page = upload(name, data)
    assert job.status == ImportJob.Status.FAILED
    assert any(error["line"] == line and reason in error["reason"] for error in job.errors), job.errors
    assert upload.queue.prompts.count() == 0
    assert reason.split(" (")[0] in page and injected(page) == []


def test_a_single_giant_line_is_refused_by_its_length(upload, settings):
    settings.MAX_TEXT_CHARS = 1000
    job, page = upload("p.jsonl", jsonl({"prompt": "x" * 500_000}))
    assert job.errors == [{"line": 1, "reason": "The prompt is 500,000 characters long; the limit is 1,000."}]
    assert "the limit is 1,000" in page and upload.queue.prompts.count() == 0


def test_a_file_over_the_byte_limit_never_becomes_a_job(upload, settings):
    settings.MAX_IMPORT_BYTES = 1000
    job, page = upload("p.jsonl", b'{"prompt": "' + b"x" * 5000 + b'"}\n')
    assert job is None and "the limit is 1,000 bytes" in page


def test_a_file_grown_past_the_limit_after_upload_is_read_only_up_to_it(upload, settings):
    """The worker reads with the cap too (the setting may have been lowered since the upload)."""
    job, _ = upload("p.jsonl", jsonl(*({"prompt": f"p{i}"} for i in range(50))))
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.QUEUED, errors=[])
    settings.MAX_IMPORT_BYTES = 100
    from labeling.tasks import run_import_job

    upload.queue.prompts.all().delete()
    run_import_job(job.pk)
    job.refresh_from_db()
    assert job.errors == [{"line": 0, "reason": "The file is larger than the limit of 100 bytes; split it."}]
    assert upload.queue.prompts.count() == 0


def test_too_many_rows_are_refused(upload, settings):
    settings.MAX_IMPORT_ROWS = 3
    job, page = upload("p.csv", b"prompt\n" + b"".join(b"p%d\n" % i for i in range(5)))
    assert {"line": 5, "reason": "The file has more than 3 rows; split it into smaller files."} in job.errors
    assert upload.queue.prompts.count() == 0


def test_a_form_body_over_the_memory_limit_is_refused(client, labeler, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client.force_login(labeler)
    response = client.post("/preview/", {"text": "x" * 20_000})
    assert response.status_code == 400

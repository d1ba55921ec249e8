"""Importing prompts from JSONL and CSV: validation with line numbers, all-or-nothing, idempotency."""

import io
import json
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Answer, ImportJob, Prompt, Queue, Task, TaskKind
from labeling.queues.importing import MAX_STORED_ERRORS, RowError, content_hash, import_prompts, parse_prompt_file
from labeling.tasks import run_import_job

LIMITS = {"max_text_chars": 50, "max_rows": 100, "max_bytes": 100_000}


def jsonl(*rows: object) -> bytes:
    """One line per row; a str row is written as is (to test bad JSON)."""
    return b"".join((row if isinstance(row, str) else json.dumps(row)).encode() + b"\n" for row in rows)


def parse(data: bytes, filename: str = "prompts.jsonl", **overrides):
    return parse_prompt_file(io.BytesIO(data), filename, **{**LIMITS, **overrides})


def run_import(queue: Queue, data: bytes, filename: str = "prompts.jsonl"):
    return import_prompts(queue=queue, fileobj=io.BytesIO(data), filename=filename)


@pytest.fixture
def queue(db) -> Queue:
    return Queue.objects.create(name="Import", task_kind=Queue.Kinds.BOTH, demonstration_overlap=2, ranking_overlap=3)


GOOD = {"prompt": "ok", "answers": ["a", "b"]}


# Parsing: every error kind, with its line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"prompt": "x"', "Invalid JSON"),
        ('{"prompt": NaN}', "NaN is not allowed"),
        ("[1, 2]", "must be a JSON object, not a list"),
        ('"just a string"', "must be a JSON object, not a string"),
        ({"answers": ["a", "b"]}, "no 'prompt'"),
        ({"prompt": ""}, "The prompt is empty"),
        ({"prompt": "   \n"}, "The prompt is empty"),
        ({"prompt": 42}, "The prompt must be a string, not a number"),
        ({"prompt": "x", "answer": ["a", "b"]}, "Unknown field(s): answer."),
        ({"prompt": "x", "answers": ["a"] * 10}, "10 answers; at most 9"),
        ({"prompt": "x", "answers": "a"}, "'answers' must be a list"),
        ({"prompt": "x", "answers": ["a", {"model": "m"}]}, "Answer 2 has no text"),
        ({"prompt": "x", "answers": ["a", {"text": "  "}]}, "The answer 2 is empty"),
        ({"prompt": "x", "answers": ["a", 3]}, "Answer 2 must be a string or an object"),
        ({"prompt": "x", "answers": ["a", {"text": "b", "score": 1}]}, "Answer 2 has unknown field(s): score"),
        ({"prompt": "x" * 51}, "The prompt is 51 characters long; the limit is 50"),
        ({"prompt": "x", "answers": ["a", "b" * 60]}, "The answer 2 is 60 characters long; the limit is 50"),
        ({"prompt": "x\x00y"}, "The prompt contains a NUL character"),
        ({"prompt": "x", "answers": ["a\x00", "b"]}, "The answer 1 contains a NUL character"),
        ('{"prompt": "x\\ud800"}', "lone surrogate"),
        ({"prompt": "x", "meta": [1]}, "The meta must be a JSON object, not a list"),
        ({"prompt": "x", "meta": "{}"}, "The meta must be a JSON object, not a string"),
        ({"prompt": "x", "meta": {"k": "\x00"}}, "The meta contains a NUL character"),
        ({"prompt": "x", "answers": ["a", {"text": "b", "meta": 1}]}, "The meta of answer 2 must be a JSON object"),
        ({"prompt": "x", "id": 1.5}, "The id must be a string or a whole number"),
        ({"prompt": "x", "id": "i" * 201}, "The id is 201 characters long; the limit is 200"),
        ({"prompt": "x", "priority": "high"}, "The priority must be a whole number"),
        ({"prompt": "x", "priority": 2**40}, "out of range"),
        ({"prompt": "x", "answers": ["a", {"text": "b", "model": 7}]}, "The model of answer 2 must be a string"),
    ],
)
def test_each_bad_jsonl_row_is_reported_with_its_line(bad_line, reason):
    rows, errors = parse(jsonl(GOOD, {"prompt": "fine"}, bad_line, {"prompt": "also fine"}))

    assert len(errors) == 1, errors
    assert errors[0].line == 3
    assert reason in errors[0].reason
    assert [row.line for row in rows] == [1, 2, 4]


def test_one_answer_is_an_error_only_when_the_queue_ranks():
    data = jsonl(GOOD, {"prompt": "single", "answers": ["only one"]})

    rows, errors = parse(data, ranking=True)
    assert errors == [RowError(2, "The row has 1 answer; a ranking needs 2 to 9 (or none, to add them later).")]

    rows, errors = parse(data, ranking=False)
    assert errors == []
    assert [len(row.answers) for row in rows] == [2, 1]


def test_no_answers_is_fine_for_a_ranking_queue():
    rows, errors = parse(jsonl({"prompt": "answers come later"}), ranking=True)

    assert errors == []
    assert rows[0].answers == []


def test_blank_lines_are_skipped_but_counted_in_line_numbers():
    rows, errors = parse(b'\n{"prompt": "a"}\n   \n\n{"prompt": ""}\n\n')

    assert [row.line for row in rows] == [2]
    assert errors == [RowError(5, "The prompt is empty.")]


def test_duplicate_id_names_the_earlier_line():
    _, errors = parse(jsonl({"prompt": "a", "id": 7}, {"prompt": "b"}, {"prompt": "c", "id": "7"}))

    assert errors == [RowError(3, "The id '7' is already used on line 1.")]


def test_duplicate_content_without_id_is_an_error_but_with_ids_it_is_not():
    rows, errors = parse(jsonl(GOOD, {"prompt": "other"}, GOOD))
    assert [(e.line, "Same prompt and answers as line 1" in e.reason) for e in errors] == [(3, True)]

    rows, errors = parse(jsonl({**GOOD, "id": "a"}, {**GOOD, "id": "b"}))
    assert errors == []
    assert rows[0].content_hash == rows[1].content_hash


def test_invalid_utf8_is_reported_on_its_line():
    data = jsonl(GOOD) + b'{"prompt": "caf\xe9"}\n' + jsonl({"prompt": "fine"})

    _, errors = parse(data)

    assert [e.line for e in errors] == [2]
    assert "Not valid UTF-8" in errors[0].reason


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_file_is_an_error(data):
    assert parse(data) == ([], [RowError(0, "The file has no rows.")])


def test_unknown_extension_is_an_error():
    rows, errors = parse(jsonl(GOOD), filename="prompts.json")

    assert rows == []
    assert errors[0].line == 0
    assert "Cannot tell the format of 'prompts.json'" in errors[0].reason


def test_reading_stops_past_max_rows():
    data = jsonl(*({"prompt": f"p{i}"} for i in range(10)))

    rows, errors = parse(data, max_rows=4)

    assert errors == [RowError(5, "The file has more than 4 rows; split it into smaller files.")]
    assert len(rows) == 4


def test_reading_stops_past_max_bytes():
    line = jsonl({"prompt": "p0"})  # every line below is this long
    data = b"".join(jsonl({"prompt": f"p{i}"}) for i in range(10))

    rows, errors = parse(data, max_bytes=3 * len(line) + 1)

    assert errors == [RowError(0, f"The file is larger than the limit of {3 * len(line) + 1:,} bytes; split it.")]
    assert len(rows) == 3


def test_a_line_longer_than_max_bytes_is_not_read_whole():
    class Recording(io.BytesIO):
        def readline(self, size=-1):
            self.limits.append(size)
            return super().readline(size)

    data = Recording(b'{"prompt": "' + b"x" * 10_000 + b'"}\n')
    data.limits = []
    _, errors = parse_prompt_file(data, "big.jsonl", max_text_chars=50_000, max_rows=10, max_bytes=100)

    assert [e.line for e in errors] == [0]
    assert data.limits == [101]


def test_content_hash_depends_on_prompt_and_answers_not_meta():
    rows, errors = parse(
        jsonl(
            {"prompt": "p", "answers": ["a", "b"], "meta": {"x": 1}, "id": 1},
            {"prompt": "p", "answers": ["a", "b"], "meta": {"x": 2}, "priority": 5, "id": 2},
            {"prompt": "p", "answers": ["a", {"text": "b", "model": "m"}], "id": 3},
            {"prompt": "p", "answers": ["b", "a"], "id": 4},
        )
    )

    assert errors == []
    hashes = [row.content_hash for row in rows]
    assert hashes[0] == hashes[1]
    assert len({hashes[0], hashes[2], hashes[3]}) == 3
    assert len(hashes[0]) == 64
    assert hashes[0] == content_hash("p", rows[0].answers)


def test_jsonl_row_fields_are_parsed():
    rows, errors = parse(
        jsonl(
            {
                "prompt": "Say hi",
                "id": 12,
                "meta": {"source": "forum"},
                "priority": -3,
                "answers": ["hi", {"text": "hello", "model": "gpt-x", "meta": {"t": 0.7}}],
            }
        ),
        filename="PROMPTS.NDJSON",
    )

    assert errors == []
    (row,) = rows
    assert (row.line, row.external_id, row.text, row.meta, row.priority) == (1, "12", "Say hi", {"source": "forum"}, -3)
    assert [(a.text, a.model, a.meta) for a in row.answers] == [("hi", "", {}), ("hello", "gpt-x", {"t": 0.7})]


# CSV ----------------------------------------------------------------------------------------------

CSV_HEADER = "prompt,id,meta,priority,answer_1,model_1,answer_2,model_2,answer_3\n"


def test_csv_rows_are_parsed():
    data = (
        CSV_HEADER
        + '"Write a poem,\nabout rain",p1,"{""lang"": ""en""}",2,first,m1,second,,\n'
        + "\n"
        + "No answers yet,,,,,,,,\n"
        + "Gap,p3,,,one,,,,three\n"
    ).encode()

    rows, errors = parse(data, filename="prompts.csv")

    assert errors == []
    assert [row.line for row in rows] == [2, 5, 6]
    first, second, third = rows
    assert (first.text, first.external_id, first.meta, first.priority) == (
        "Write a poem,\nabout rain",
        "p1",
        {"lang": "en"},
        2,
    )
    assert [(a.text, a.model) for a in first.answers] == [("first", "m1"), ("second", "")]
    assert (second.external_id, second.answers) == ("", [])
    assert [a.text for a in third.answers] == ["one", "three"]  # empty answer cells are skipped


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",p9,,,a,,b,,\n", "The prompt is empty"),
        ("x,,[1],,a,,b,,\n", "The meta must be a JSON object, not a list"),
        ("x,,{bad,,a,,b,,\n", "The meta cell is not valid JSON"),
        ("x,,,high,a,,b,,\n", "The priority 'high' is not a whole number"),
        ("x,,,,,m1,b,,\n", "model_1 is set but answer_1 is empty"),
        ("x,,,,a,,b,,,extra\n", "The row has 10 cells but the header has 9"),
        ("x,,,,only,,,,\n", "The row has 1 answer"),
        ("x,,,," + "y" * 51 + ",,b,,\n", "The answer 1 is 51 characters long; the limit is 50"),
        ("x\x00,,,,a,,b,,\n", "NUL"),
    ],
)
def test_each_bad_csv_row_is_reported_with_its_line(row, reason):
    data = (CSV_HEADER + "fine,,,,a,,b,,\n" + row + "also fine,,,,a,,b,,\n").encode()

    rows, errors = parse(data, filename="prompts.csv", ranking=True)

    assert [e.line for e in errors] == [3], errors
    assert reason in errors[0].reason
    assert [r.line for r in rows] == [2, 4]


def test_csv_line_numbers_follow_multiline_cells():
    data = (CSV_HEADER + '"one\ntwo\nthree",,,,a,,b,,\n' + ",,,,a,,b,,\n").encode()

    rows, errors = parse(data, filename="prompts.csv")

    assert [r.line for r in rows] == [2]
    assert [e.line for e in errors] == [5]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("id,answer_1\n", "must have a 'prompt' column"),
        ("prompt,answer_10\n", "Unknown column(s): answer_10"),
        ("prompt,Answer1\n", "Unknown column(s): answer1"),
        ("prompt,id,id\n", "Repeated column(s): id"),
    ],
)
def test_bad_csv_header_is_reported_on_line_1(header, reason):
    rows, errors = parse((header + "x,y,z\n").encode(), filename="p.csv")

    assert rows == []
    assert [e.line for e in errors] == [1]
    assert reason in errors[0].reason


def test_csv_header_only_is_an_empty_file():
    assert parse(CSV_HEADER.encode(), filename="p.csv") == ([], [RowError(0, "The file has no rows.")])


def test_csv_with_byte_order_mark_and_crlf():
    rows, errors = parse("\ufeffPrompt,ID\r\nhello,h1\r\n".encode(), filename="p.csv")

    assert errors == []
    assert [(r.text, r.external_id) for r in rows] == [("hello", "h1")]


def test_csv_broken_quoting_stops_with_its_line():
    _, errors = parse(b'prompt,id\nok,1\n"bad"x,2\nlater,3\n', filename="p.csv")

    assert [e.line for e in errors] == [3]
    assert "Invalid CSV" in errors[0].reason


# Importing ----------------------------------------------------------------------------------------


def test_import_creates_prompts_answers_and_tasks_per_queue_kind(queue):
    data = jsonl(
        {
            "prompt": "with answers",
            "id": "a",
            "meta": {"src": "x"},
            "priority": 4,
            "answers": ["one", {"text": "two", "model": "m2", "meta": {"t": 1}}],
        },
        {"prompt": "no answers yet"},
    )

    report = run_import(queue, data)

    assert (report.created, report.existing, report.errors) == (2, 0, [])
    with_answers = Prompt.objects.get(queue=queue, external_id="a")
    assert (with_answers.text, with_answers.meta, with_answers.priority) == ("with answers", {"src": "x"}, 4)
    assert with_answers.content_hash == content_hash("with answers", parse(data)[0][0].answers)
    assert list(with_answers.answers.values_list("position", "text", "model", "meta")) == [
        (0, "one", "", {}),
        (1, "two", "m2", {"t": 1}),
    ]
    tasks = set(Task.objects.filter(prompt__queue=queue).values_list("prompt__text", "kind", "overlap"))
    assert tasks == {
        ("with answers", TaskKind.DEMONSTRATION, 2),
        ("with answers", TaskKind.RANKING, 3),
        ("no answers yet", TaskKind.DEMONSTRATION, 2),
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (Queue.Kinds.RANKING, {("two", TaskKind.RANKING)}),
        (Queue.Kinds.DEMONSTRATION, {("two", TaskKind.DEMONSTRATION), ("none", TaskKind.DEMONSTRATION)}),
    ],
)
def test_tasks_follow_the_queue_kind(db, kind, expected):
    queue = Queue.objects.create(name=f"Q-{kind}", task_kind=kind)

    report = run_import(queue, jsonl({"prompt": "two", "answers": ["a", "b"]}, {"prompt": "none"}))

    assert report.errors == []
    assert set(Task.objects.filter(prompt__queue=queue).values_list("prompt__text", "kind")) == expected


def test_demonstration_queue_accepts_one_answer_ranking_queue_does_not(db):
    data = jsonl({"prompt": "p", "answers": ["single"]})
    demonstrations = Queue.objects.create(name="D", task_kind=Queue.Kinds.DEMONSTRATION)
    rankings = Queue.objects.create(name="R", task_kind=Queue.Kinds.RANKING)

    assert run_import(demonstrations, data).created == 1
    report = run_import(rankings, data)

    assert [e.line for e in report.errors] == [1]
    assert not Prompt.objects.filter(queue=rankings).exists()


def test_one_bad_row_imports_nothing(queue):
    data = jsonl(GOOD, {"prompt": "b", "answers": ["x", "y"]}, {"prompt": ""}, {"prompt": "d"})

    report = run_import(queue, data)

    assert (report.created, report.existing) == (0, 0)
    assert report.errors == [RowError(3, "The prompt is empty.")]
    assert not Prompt.objects.filter(queue=queue).exists()
    assert not Task.objects.filter(prompt__queue=queue).exists()


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        (
            "p.jsonl",
            jsonl({**GOOD, "id": 1}, {"prompt": "no id", "answers": ["x", "y"]}, {"prompt": "no id, no answers"}),
        ),
        ("p.csv", b'prompt,id,answer_1,answer_2\nok,1,a,b\nno id,,x,y\n"no id, no answers",,,\n'),
    ],
)
def test_importing_the_same_file_twice_creates_no_duplicates(queue, filename, data):
    first = run_import(queue, data, filename)
    counts = (Prompt.objects.count(), Answer.objects.count(), Task.objects.count())
    second = run_import(queue, data, filename)

    assert (first.created, first.existing, first.errors) == (3, 0, [])
    assert (second.created, second.existing, second.errors) == (0, 3, [])
    assert (Prompt.objects.count(), Answer.objects.count(), Task.objects.count()) == counts == (3, 4, 5)


def test_a_grown_file_imports_only_the_new_rows(queue):
    run_import(queue, jsonl({"prompt": "a", "id": 1}, {"prompt": "b"}))

    report = run_import(
        queue, jsonl({"prompt": "a", "id": 1}, {"prompt": "b"}, {"prompt": "c", "id": 2}, {"prompt": "d"})
    )

    assert (report.created, report.existing) == (2, 2)
    assert sorted(Prompt.objects.filter(queue=queue).values_list("text", flat=True)) == ["a", "b", "c", "d"]


def test_same_id_with_different_content_is_an_error_and_imports_nothing(queue):
    run_import(queue, jsonl({"prompt": "original", "id": "x1", "answers": ["a", "b"]}))

    report = run_import(
        queue, jsonl({"prompt": "new one", "id": "x2"}, {"prompt": "original", "id": "x1", "answers": ["a", "changed"]})
    )

    assert (report.created, report.existing) == (0, 0)
    assert report.errors == [RowError(2, "The id 'x1' is already in the queue with a different prompt or answers.")]
    assert list(Prompt.objects.filter(queue=queue).values_list("external_id", flat=True)) == ["x1"]
    assert list(Answer.objects.filter(prompt__queue=queue).values_list("text", flat=True)) == ["a", "b"]


def test_ids_are_per_queue(queue):
    other = Queue.objects.create(name="Other")
    run_import(other, jsonl({"prompt": "elsewhere", "id": "x1"}))

    report = run_import(queue, jsonl({"prompt": "here", "id": "x1"}))

    assert (report.created, report.errors) == (1, [])


def test_html_is_stored_verbatim(queue):
    prompt = '<script>alert("p")</script> & <b>bold</b>'
    answer = "<img src=x onerror=alert(1)>"

    run_import(queue, jsonl({"prompt": prompt, "answers": [answer, "  padded  "]}))

    stored = Prompt.objects.get(queue=queue)
    assert stored.text == prompt
    assert list(stored.answers.values_list("text", flat=True)) == [answer, "  padded  "]


def test_import_uses_a_constant_number_of_queries_per_batch(db):
    def queries_for(n: int) -> int:
        queue = Queue.objects.create(name=f"Q{n}", task_kind=Queue.Kinds.BOTH)
        data = jsonl(*({"prompt": f"p{i}", "id": i, "answers": ["a", "b"]} for i in range(n)))
        with CaptureQueriesContext(connection) as context:
            report = run_import(queue, data)
        assert report.created == n
        return len(context)

    small, large = queries_for(200), queries_for(2000)

    assert Task.objects.count() == 2 * 2200
    # Ten times the rows may add a query per batch (of 1000 rows, or fewer where SQLite caps a
    # statement's parameters), never one per row.
    allowed = 10 if connection.vendor == "postgresql" else 60
    assert large - small <= allowed, (small, large)


# The command line ---------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_cli_imports_and_reports(queue, tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl(GOOD, {"prompt": "two"}))
    out = io.StringIO()

    call_command("import_prompts", str(path), "--queue", queue.name, stdout=out)
    call_command("import_prompts", str(path), "--queue", queue.name, stdout=out)

    assert out.getvalue().splitlines() == [
        "Imported 2 prompts (0 already present)",
        "Imported 0 prompts (2 already present)",
    ]
    assert Prompt.objects.filter(queue=queue).count() == 2


def test_cli_prints_every_error_and_fails(queue, tmp_path):
    path = write(tmp_path, "p.csv", b"prompt,answer_1,answer_2\nok,a,b\n,a,b\nfine,a,b\nbad\x00,a,b\n")
    err = io.StringIO()

    with pytest.raises(CommandError, match="2 error"):
        call_command("import_prompts", str(path), "--queue", queue.name, stderr=err)

    assert err.getvalue().splitlines() == [
        "line 3: The prompt is empty.",
        "line 5: The prompt contains a NUL character.",
    ]
    assert not Prompt.objects.exists()


def test_cli_missing_queue_is_an_error_without_create(db, tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl(GOOD))

    with pytest.raises(CommandError, match="no queue named 'New'"):
        call_command("import_prompts", str(path), "--queue", "New")
    assert not Queue.objects.exists()


def test_cli_create_makes_the_queue_with_its_kind(db, tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl(GOOD))

    call_command(
        "import_prompts", str(path), "--queue", "New", "--create", "--kind", "demonstration", stdout=io.StringIO()
    )

    queue = Queue.objects.get(name="New")
    assert queue.task_kind == Queue.Kinds.DEMONSTRATION
    assert list(Task.objects.filter(prompt__queue=queue).values_list("kind", flat=True)) == [TaskKind.DEMONSTRATION]


def test_cli_failed_import_with_create_leaves_no_queue(db, tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl({"prompt": ""}))

    with pytest.raises(CommandError):
        call_command("import_prompts", str(path), "--queue", "New", "--create", stderr=io.StringIO())
    assert not Queue.objects.filter(name="New").exists()


def test_cli_missing_file_is_an_error(queue, tmp_path):
    with pytest.raises(CommandError, match="Cannot open"):
        call_command("import_prompts", str(tmp_path / "nope.jsonl"), "--queue", queue.name)


# The Celery task, run in the test process ---------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def make_job(queue: Queue, data: bytes, name: str = "upload.jsonl") -> ImportJob:
    return ImportJob.objects.create(queue=queue, file=ContentFile(data, name=name), original_name=name)


def test_task_imports_and_records_success(queue, media):
    job = make_job(queue, jsonl(GOOD, {"prompt": "two"}))
    assert (media / job.file.name).is_file()

    run_import_job(job.id)

    job.refresh_from_db()
    assert (job.status, job.created_count, job.existing_count, job.errors) == (ImportJob.Status.SUCCEEDED, 2, 0, [])
    assert job.finished_at is not None
    assert Prompt.objects.filter(queue=queue).count() == 2


def test_task_uses_the_original_name_for_the_format(queue, media):
    job = ImportJob.objects.create(
        queue=queue, file=ContentFile(b"prompt,id\nhello,1\n", name="stored-as.bin"), original_name="mine.csv"
    )

    run_import_job(job.id)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert Prompt.objects.get(queue=queue).external_id == "1"


def test_task_records_row_errors_capped(queue, media):
    bad_rows = MAX_STORED_ERRORS + 500
    job = make_job(queue, jsonl(GOOD, *(["not json"] * bad_rows)))

    run_import_job(job.id)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert (job.created_count, job.existing_count) == (0, 0)
    assert len(job.errors) == MAX_STORED_ERRORS + 1
    assert job.errors[-1] == {"line": 0, "reason": "… and 500 more problems, not listed."}
    assert job.errors[0] == {"line": 2, "reason": "Invalid JSON: Expecting value (column 1)."}
    assert not Prompt.objects.exists()


def test_task_marks_an_unexpected_exception_failed_and_reraises(queue, media, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("labeling.queues.importing.import_prompts", explode)
    job = make_job(queue, jsonl(GOOD))

    with pytest.raises(RuntimeError, match="disk on fire"):
        run_import_job(job.id)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.finished_at is not None
    assert "disk on fire" in job.errors[0]["reason"]


def test_task_does_not_rerun_a_finished_job(queue, media):
    job = make_job(queue, jsonl(GOOD))
    run_import_job(job.id)

    run_import_job(job.id)  # a redelivered message

    job.refresh_from_db()
    assert (job.status, job.created_count, job.existing_count) == (ImportJob.Status.SUCCEEDED, 1, 0)

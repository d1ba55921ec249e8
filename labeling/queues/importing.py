"""Importing prompts, with or without sampled answers, into a queue from a JSONL or CSV file.

`parse_prompt_file` checks a whole file without touching the database and reports every bad row
with its line number. `import_prompts` imports a file (and `import_rows` the rows an API client
pushes) only if every row is good, in one transaction, and is idempotent: a row already in the
queue (same id, or same content when it has no id) is counted as existing, never imported twice.
docs/importing.md describes the formats.
"""

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import audit
from core.text import CSV_SUFFIXES, JSONL_SUFFIXES, character_problem, nested_character_problem

from ..assignment.services import sync_tasks
from ..models import MAX_ANSWERS, MIN_RANKED_ANSWERS, Answer, ImportJob, Prompt, Queue, TaskKind

ROW_FIELDS = {"prompt", "answers", "id", "meta", "priority"}
ANSWER_FIELDS = {"text", "model", "meta"}
CSV_COLUMNS = {"prompt", "id", "meta", "priority"} | {
    f"{name}_{k}" for name in ("answer", "model") for k in range(1, MAX_ANSWERS + 1)
}
# Column limits of the Prompt and Answer models; longer values would fail inside the transaction.
MAX_ID_CHARS = Prompt._meta.get_field("external_id").max_length
MAX_MODEL_CHARS = Answer._meta.get_field("model").max_length
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1  # IntegerField on every database
BATCH_SIZE = 1000
MAX_STORED_ERRORS = 1000  # a bad 100k-row file must not turn into a huge JSON column


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # 1-based line in the file, 0 for the whole file; 0-based row of an API push
    reason: str


@dataclass(frozen=True, slots=True)
class AnswerRow:
    text: str
    model: str = ""
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptRow:
    line: int
    external_id: str  # "" when the row has no id
    text: str
    answers: list[AnswerRow]
    meta: dict
    priority: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    created: int
    existing: int
    errors: list[RowError]


class _BadRow(Exception):
    """One row is invalid; the message says why."""


def content_hash(text: str, answers: list[AnswerRow]) -> str:
    """SHA-256 of the prompt and its answers' texts and models (not meta or priority)."""
    canonical = json.dumps([text, [[a.text, a.model] for a in answers]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_prompt_file(
    fileobj: BinaryIO,
    filename: str,
    *,
    max_text_chars: int,
    max_rows: int,
    max_bytes: int,
    ranking: bool = False,
) -> tuple[list[PromptRow], list[RowError]]:
    """Read and check a whole JSONL or CSV file: the good rows, and every bad row's error.

    With `ranking`, a row with exactly one answer is an error (a ranking needs two to nine).
    """
    name = filename.lower()
    errors: list[RowError] = []
    lines = _read_lines(fileobj, max_bytes=max_bytes, errors=errors)
    if name.endswith(JSONL_SUFFIXES):
        records = _jsonl_records(lines)
    elif name.endswith(CSV_SUFFIXES):
        records = _csv_records(lines, errors)
    else:
        expected = ", ".join(JSONL_SUFFIXES + CSV_SUFFIXES)
        return [], [RowError(0, f"Cannot tell the format of {filename!r}: the name must end in {expected}.")]

    rows, count = _check_records(
        records, errors, max_text_chars=max_text_chars, max_rows=max_rows, ranking=ranking, unit="line"
    )
    if count == 0 and not errors:
        errors.append(RowError(0, "The file has no rows."))
    errors.sort(key=lambda e: e.line)
    return rows, errors


def _check_records(
    records: Iterable[tuple[int, Any]],
    errors: list[RowError],
    *,
    max_text_chars: int,
    max_rows: int,
    ranking: bool,
    unit: str,
) -> tuple[list[PromptRow], int]:
    """The good rows and how many records there were; each bad row's error goes to `errors`.

    `unit` names where a row is ("line" of a file, "row" of an API request) in the messages.
    """
    rows: list[PromptRow] = []
    first_line_of_id: dict[str, int] = {}
    first_line_of_content: dict[str, int] = {}
    count = 0
    for line, record in records:
        count += 1
        if count > max_rows:
            errors.append(RowError(line, f"The file has more than {max_rows:,} rows; split it into smaller files."))
            break
        try:
            if isinstance(record, _BadRow):
                raise record
            row = _clean_row(line, record, max_text_chars=max_text_chars, ranking=ranking)
            # Within one file a repeated id or content is almost always a mistake, so it is reported.
            if row.external_id:
                earlier = first_line_of_id.setdefault(row.external_id, line)
                if earlier != line:
                    raise _BadRow(f"The id {row.external_id!r} is already used on {unit} {earlier}.")
            else:
                earlier = first_line_of_content.setdefault(row.content_hash, line)
                if earlier != line:
                    raise _BadRow(
                        f"Same prompt and answers as {unit} {earlier}; give the rows different ids to import both."
                    )
        except _BadRow as error:
            errors.append(RowError(line, str(error)))
        else:
            rows.append(row)
    return rows, count


def import_prompts(*, queue: Queue, fileobj: BinaryIO, filename: str) -> ImportReport:
    """Import a file into `queue` if every row is valid, else nothing; then create the tasks."""
    rows, errors = parse_prompt_file(
        fileobj,
        filename,
        max_text_chars=settings.MAX_TEXT_CHARS,
        max_rows=settings.MAX_IMPORT_ROWS,
        max_bytes=settings.MAX_IMPORT_BYTES,
        ranking=TaskKind.RANKING in queue.kinds,
    )
    if errors:
        return ImportReport(created=0, existing=0, errors=errors)
    return _store_rows(queue, rows)


def import_rows(*, queue: Queue, records: list) -> ImportReport:
    """Import rows given as parsed JSON (the API's push), checked exactly as a file's rows are.

    Rows are numbered from 0 in errors, as a client indexes the list it sent. All or nothing, and
    idempotent like a file import.
    """
    max_rows = settings.MAX_IMPORT_ROWS
    if len(records) > max_rows:
        return ImportReport(
            created=0,
            existing=0,
            errors=[RowError(max_rows, f"More than {max_rows:,} rows; send them in smaller batches.")],
        )
    errors: list[RowError] = []
    rows, _ = _check_records(
        enumerate(records),
        errors,
        max_text_chars=settings.MAX_TEXT_CHARS,
        max_rows=max_rows,
        ranking=TaskKind.RANKING in queue.kinds,
        unit="row",
    )
    if errors:
        return ImportReport(created=0, existing=0, errors=errors)
    return _store_rows(queue, rows)


def push_rows(*, queue: Queue, records: list, user=None) -> ImportReport:
    """The API's push: import_rows, audited when the rows went in (all or nothing, in one transaction)."""
    with transaction.atomic():
        report = import_rows(queue=queue, records=records)
        if not report.errors:
            detail = {"rows": len(records), "created": report.created, "existing": report.existing}
            audit.record(actor=user, action="import.push", target=queue, detail=detail)
    return report


def request_import(*, queue: Queue, upload, user=None) -> ImportJob:
    """Record an uploaded file as an import job and have the worker import it once the job is committed."""
    from ..tasks import run_import_job  # here: the tasks module imports this one

    with transaction.atomic():
        job = ImportJob.objects.create(queue=queue, file=upload, original_name=upload.name, uploaded_by=user)
        audit.record(actor=user, action="import.request", target=job,
                     detail={"queue": queue.pk, "file": upload.name, "bytes": upload.size})  # fmt: skip
        job.send_task(run_import_job)  # once the job row is committed and visible to the worker
    return job


def run_import(job_id: int) -> None:
    """The worker's side of an import job: import its file and record the outcome on it."""
    job = ImportJob.objects.select_related("queue").get(pk=job_id)
    if job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED):
        # A redelivered message (acks_late) must not overwrite the first run's report.
        return
    job.status = ImportJob.Status.RUNNING
    job.save(update_fields=["status"])
    try:
        with job.file.open("rb") as fileobj:
            report = import_prompts(queue=job.queue, fileobj=fileobj, filename=job.original_name)
    except Exception as error:
        ImportJob.fail(job.pk, f"The import stopped on an unexpected error: {type(error).__name__}: {error}")
        raise
    job.created_count = report.created
    job.existing_count = report.existing
    job.errors = [{"line": e.line, "reason": e.reason} for e in report.errors[:MAX_STORED_ERRORS]]
    if len(report.errors) > MAX_STORED_ERRORS:
        left_out = len(report.errors) - MAX_STORED_ERRORS
        job.errors.append({"line": 0, "reason": f"… and {left_out:,} more problems, not listed."})
    job.status = ImportJob.Status.FAILED if report.errors else ImportJob.Status.SUCCEEDED
    job.finished_at = timezone.now()
    job.save(update_fields=["created_count", "existing_count", "errors", "status", "finished_at"])


def _store_rows(queue: Queue, rows: list[PromptRow]) -> ImportReport:
    """Create the rows not yet in the queue, in one transaction, and the tasks for them."""
    with transaction.atomic():
        # Two imports into one queue take turns, so the second sees the first's rows as existing
        # instead of failing on the unique constraints.
        Queue.objects.select_for_update().filter(pk=queue.pk).exists()
        new_rows, existing, errors = _split_existing(queue, rows)
        if errors:
            return ImportReport(created=0, existing=0, errors=errors)
        for start in range(0, len(new_rows), BATCH_SIZE):
            _create_batch(queue, new_rows[start : start + BATCH_SIZE])
        sync_tasks(queue)
    return ImportReport(created=len(new_rows), existing=existing, errors=[])


def _split_existing(queue: Queue, rows: list[PromptRow]) -> tuple[list[PromptRow], int, list[RowError]]:
    """Rows not yet in the queue, how many are, and the rows whose id is taken by other content."""
    with_id = [row for row in rows if row.external_id]
    without_id = [row for row in rows if not row.external_id]
    stored_hash_by_id: dict[str, str] = {}
    for start in range(0, len(with_id), BATCH_SIZE):
        ids = [row.external_id for row in with_id[start : start + BATCH_SIZE]]
        stored_hash_by_id.update(
            Prompt.objects.filter(queue=queue, external_id__in=ids).values_list("external_id", "content_hash")
        )
    stored_hashes: set[str] = set()
    for start in range(0, len(without_id), BATCH_SIZE):
        hashes = [row.content_hash for row in without_id[start : start + BATCH_SIZE]]
        stored_hashes.update(
            Prompt.objects.filter(queue=queue, external_id="", content_hash__in=hashes).values_list(
                "content_hash", flat=True
            )
        )

    new_rows: list[PromptRow] = []
    errors: list[RowError] = []
    existing = 0
    for row in rows:
        if row.external_id:
            stored = stored_hash_by_id.get(row.external_id)
            if stored is None:
                new_rows.append(row)
            elif stored == row.content_hash:
                existing += 1
            else:
                errors.append(
                    RowError(
                        row.line,
                        f"The id {row.external_id!r} is already in the queue with a different prompt or answers.",
                    )
                )
        elif row.content_hash in stored_hashes:
            existing += 1
        else:
            new_rows.append(row)
    return new_rows, existing, errors


def _create_batch(queue: Queue, rows: list[PromptRow]) -> None:
    # One batch at a time keeps the model instances of a 100k-row file out of memory at once.
    prompts = Prompt.objects.bulk_create(
        Prompt(
            queue=queue,
            external_id=row.external_id,
            content_hash=row.content_hash,
            text=row.text,
            meta=row.meta,
            priority=row.priority,
        )
        for row in rows
    )
    Answer.objects.bulk_create(
        (
            Answer(prompt=prompt, position=position, text=answer.text, model=answer.model, meta=answer.meta)
            for prompt, row in zip(prompts, rows, strict=True)
            for position, answer in enumerate(row.answers)
        ),
        batch_size=BATCH_SIZE,
    )


# Reading ------------------------------------------------------------------------------------------


def _read_lines(fileobj: BinaryIO, *, max_bytes: int, errors: list[RowError]) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line with its ending), stopping past `max_bytes`.

    A line that is not UTF-8 is reported and yielded with replacement characters, so the rest
    of the file is still checked.
    """
    total = 0
    number = 0
    while True:
        # The limit keeps one endless line from being read into memory whole.
        raw = fileobj.readline(max_bytes - total + 1)
        if not raw:
            return
        total += len(raw)
        number += 1
        if total > max_bytes:
            errors.append(RowError(0, f"The file is larger than the limit of {max_bytes:,} bytes; split it."))
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            errors.append(RowError(number, f"Not valid UTF-8 (byte {error.start + 1} of the line)."))
            text = raw.decode("utf-8", errors="replace")
        if number == 1:
            text = text.removeprefix("\ufeff")  # the byte order mark some editors write
        yield number, text


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")  # NaN and Infinity: not JSON, and PostgreSQL refuses them


def _jsonl_records(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, Any]]:
    """Yield (line, parsed row), or (line, _BadRow) for a line that is not JSON; blank lines are skipped."""
    for number, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            record = _BadRow(f"Invalid JSON: {error.msg} (column {error.colno}).")
        except ValueError as error:
            record = _BadRow(f"Invalid JSON: {error}.")
        except RecursionError:
            record = _BadRow("Invalid JSON: nested too deeply.")
        yield number, record


def _csv_records(lines: Iterator[tuple[int, str]], errors: list[RowError]) -> Iterator[tuple[int, Any]]:
    """Turn CSV rows into the dicts a JSONL row gives, so one function checks both (or _BadRow)."""
    reader = csv.reader((text for _, text in lines), strict=True)
    header: list[str] | None = None
    while True:
        line = reader.line_num + 1  # a quoted cell may span lines; report the row's first line
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # After a quoting error the reader cannot tell where rows start, so checking stops here.
            errors.append(RowError(line, f"Invalid CSV: {error}."))
            return
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            problem = _csv_header_problem(header)
            if problem:
                errors.append(RowError(line, problem))
                return
            continue
        if len(cells) > len(header):
            yield line, _BadRow(f"The row has {len(cells)} cells but the header has {len(header)}.")
            continue
        values = dict(zip(header, cells, strict=False))  # missing trailing cells count as empty
        try:
            record: Any = _csv_record(values)
        except _BadRow as error:
            record = error
        yield line, record


def _csv_header_problem(header: list[str]) -> str | None:
    if "prompt" not in header:
        return f"The header row must have a 'prompt' column; it has: {', '.join(header)}."
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        return (
            f"Unknown column(s): {', '.join(unknown)}. Allowed: prompt, id, meta, priority, "
            f"answer_1..answer_{MAX_ANSWERS}, model_1..model_{MAX_ANSWERS}."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        return f"Repeated column(s): {', '.join(repeated)}."
    return None


def _csv_record(values: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {"prompt": values["prompt"], "id": values.get("id", "")}
    if values.get("meta", "").strip():
        try:
            record["meta"] = json.loads(values["meta"], parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            raise _BadRow(f"The meta cell is not valid JSON: {error}.") from None
    if values.get("priority", "").strip():
        try:
            record["priority"] = int(values["priority"].strip())
        except ValueError:
            raise _BadRow(f"The priority {values['priority']!r} is not a whole number.") from None
    answers = []
    for k in range(1, MAX_ANSWERS + 1):
        text, model = values.get(f"answer_{k}", ""), values.get(f"model_{k}", "").strip()
        if text.strip():
            answers.append({"text": text, "model": model})
        elif model:
            raise _BadRow(f"model_{k} is set but answer_{k} is empty.")
    record["answers"] = answers
    return record


# Checking one row ---------------------------------------------------------------------------------


def _clean_row(line: int, record: Any, *, max_text_chars: int, ranking: bool) -> PromptRow:
    if not isinstance(record, dict):
        raise _BadRow(f"A row must be a JSON object, not {_type_name(record)}.")
    unknown = sorted(set(record) - ROW_FIELDS)
    if unknown:
        raise _BadRow(f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(sorted(ROW_FIELDS))}.")
    if record.get("prompt") is None:
        raise _BadRow("The row has no 'prompt'.")
    text = _clean_text(record["prompt"], what="prompt", max_chars=max_text_chars)

    raw_answers = record.get("answers")
    if raw_answers is None:
        raw_answers = []
    if not isinstance(raw_answers, list):
        raise _BadRow(f"'answers' must be a list, not {_type_name(raw_answers)}.")
    if len(raw_answers) > MAX_ANSWERS:
        raise _BadRow(f"The row has {len(raw_answers)} answers; at most {MAX_ANSWERS} are allowed.")
    if ranking and len(raw_answers) == 1:
        raise _BadRow(
            f"The row has 1 answer; a ranking needs {MIN_RANKED_ANSWERS} to {MAX_ANSWERS} (or none, to add them later)."
        )
    answers = [_clean_answer(i, raw, max_text_chars=max_text_chars) for i, raw in enumerate(raw_answers, start=1)]

    return PromptRow(
        line=line,
        external_id=_clean_id(record.get("id")),
        text=text,
        answers=answers,
        meta=_clean_meta(record.get("meta"), what="meta"),
        priority=_clean_priority(record.get("priority")),
        content_hash=content_hash(text, answers),
    )


def _clean_answer(number: int, raw: Any, *, max_text_chars: int) -> AnswerRow:
    what = f"answer {number}"
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise _BadRow(f"{what.capitalize()} must be a string or an object, not {_type_name(raw)}.")
    unknown = sorted(set(raw) - ANSWER_FIELDS)
    if unknown:
        raise _BadRow(
            f"{what.capitalize()} has unknown field(s): {', '.join(unknown)}. "
            f"Allowed: {', '.join(sorted(ANSWER_FIELDS))}."
        )
    if raw.get("text") is None:
        raise _BadRow(f"{what.capitalize()} has no text.")
    text = _clean_text(raw["text"], what=what, max_chars=max_text_chars)
    model = raw.get("model")
    if model is None:
        model = ""
    if not isinstance(model, str):
        raise _BadRow(f"The model of {what} must be a string, not {_type_name(model)}.")
    model = _clean_text(model, what=f"model of {what}", max_chars=MAX_MODEL_CHARS, allow_empty=True).strip()
    return AnswerRow(text=text, model=model, meta=_clean_meta(raw.get("meta"), what=f"meta of {what}"))


def _clean_text(value: Any, *, what: str, max_chars: int, allow_empty: bool = False) -> str:
    """The text as given (never stripped or escaped), if it can be stored and shown."""
    if not isinstance(value, str):
        raise _BadRow(f"The {what} must be a string, not {_type_name(value)}.")
    if not allow_empty and not value.strip():
        raise _BadRow(f"The {what} is empty.")
    if len(value) > max_chars:
        raise _BadRow(f"The {what} is {len(value):,} characters long; the limit is {max_chars:,}.")
    problem = character_problem(value)
    if problem:
        raise _BadRow(f"The {what} {problem}.")
    return value


def _clean_id(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadRow(f"The id must be a string or a whole number, not {_type_name(value)}.")
    # An empty id means "no id" (an empty CSV cell); surrounding spaces are never meant.
    return _clean_text(str(value), what="id", max_chars=MAX_ID_CHARS, allow_empty=True).strip()


def _clean_meta(value: Any, *, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadRow(f"The {what} must be a JSON object, not {_type_name(value)}.")
    problem = nested_character_problem(value)
    if problem:
        raise _BadRow(f"The {what} {problem}.")
    return value


def _clean_priority(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRow(f"The priority must be a whole number, not {_type_name(value)}.")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise _BadRow(f"The priority {value} is out of range ({MIN_PRIORITY} to {MAX_PRIORITY}).")
    return value


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

"""manage.py export {sft,comparisons,pairs} --queue NAME_OR_ID --format FORMAT --out PATH [--name NAME] [filters].

The export is recorded as a snapshot (the next version of --name), like those made on /ml/exports/,
but written where --out says.
"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.datasets.exports import DATASETS, FORMATS, build_export, record_export
from labeling.models import Queue


class Command(BaseCommand):
    help = (
        "Export demonstrations (sft), rankings per prompt (comparisons) or reward-model pairs (pairs) as JSONL, CSV"
        " or Parquet, with a dataset card README.md beside the file, recorded as a snapshot. See docs/exports.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", choices=DATASETS)
        parser.add_argument(
            "--queue", action="append", required=True, help="A queue's name or id; repeat for several queues."
        )
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument("--out", type=Path, required=True, help="The data file to write.")
        parser.add_argument(
            "--name", help="The snapshot's name (a slug); this export is its next version. Default: the dataset."
        )
        parser.add_argument("--date-from", help="Only labels submitted on or after this date (YYYY-MM-DD).")
        parser.add_argument("--date-to", help="Only labels submitted on or before this date (YYYY-MM-DD).")
        parser.add_argument("--labeler", action="append", default=[], help="Only this labeler's labels; repeatable.")
        parser.add_argument("--exclude-skipped", action="store_true", help="Leave out prompts that someone skipped.")
        parser.add_argument("--exclude-flagged", action="store_true", help="Leave out prompts with a flagged answer.")
        parser.add_argument(
            "--min-agreement", type=float, help="Leave out labelers whose agreement in a queue is below this (0-1)."
        )
        parser.add_argument(
            "--min-gold-accuracy", type=float, help="Leave out labelers whose gold accuracy in a queue is below this."
        )

    def handle(
        self, *args, dataset: str, queue: list[str], format: str, out: Path, name: str | None, labeler: list[str],
        **options,
    ):
        queues = [self._queue(name_or_id) for name_or_id in dict.fromkeys(queue)]
        users = dict(get_user_model().objects.filter(username__in=labeler).values_list("username", "pk"))
        unknown = [name for name in labeler if name not in users]
        if unknown:
            raise CommandError(f"There is no labeler named {unknown[0]!r}.")
        filters = {
            "date_from": options["date_from"],
            "date_to": options["date_to"],
            "labeler_ids": list(users.values()),
            "exclude_skipped": options["exclude_skipped"],
            "exclude_flagged": options["exclude_flagged"],
        }
        for key in ("min_agreement", "min_gold_accuracy"):
            if options[key] is not None:
                filters[key] = options[key]
        try:
            snapshot = record_export(
                name=name or dataset, dataset=dataset, fmt=format, queues=queues, filters=filters
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        try:
            snapshot = build_export(snapshot, path=out)
        except ValueError as error:  # recorded on the snapshot as failed
            raise CommandError(f"{snapshot}: {error}") from None
        self.stdout.write(
            f"Wrote {snapshot.rows} rows to {out} (SHA-256 {snapshot.sha256}) as snapshot {snapshot};"
            f" card {out.with_name('README.md')}"
        )

    def _queue(self, name_or_id: str) -> Queue:
        # The name first: a queue may well be named "2".
        queue = Queue.objects.filter(name=name_or_id).first()
        if queue is None and name_or_id.isdecimal():
            queue = Queue.objects.filter(pk=int(name_or_id)).first()
        if queue is None:
            raise CommandError(f"There is no queue named or numbered {name_or_id!r}.")
        return queue

"""manage.py import_prompts FILE --queue NAME [--create [--kind KIND]]: import a JSONL or CSV file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from labeling.models import Queue
from labeling.queues.importing import import_prompts
from labeling.queues.services import record_instructions


class Command(BaseCommand):
    help = "Import prompts (and their answers) from a JSONL or CSV file into a queue. See docs/importing.md."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="A .jsonl, .ndjson, .json-lines or .csv file.")
        parser.add_argument("--queue", required=True, help="The queue's name.")
        parser.add_argument("--create", action="store_true", help="Create the queue if there is none of that name.")
        parser.add_argument(
            "--kind", choices=Queue.Kinds.values, help="With --create: what the new queue asks for (default ranking)."
        )

    def handle(self, *args, file: Path, queue: str, create: bool, kind: str | None, **options) -> None:
        if kind and not create:
            raise CommandError("--kind only applies with --create.")
        try:
            fileobj = file.open("rb")
        except OSError as error:
            raise CommandError(f"Cannot open {file}: {error.strerror}.") from None
        with fileobj, transaction.atomic():
            # The queue is created in the import's transaction, so a failed import leaves no empty queue.
            target = self._queue(queue, create=create, kind=kind)
            report = import_prompts(queue=target, fileobj=fileobj, filename=file.name)
            if report.errors:
                for error in report.errors:
                    self.stderr.write(f"line {error.line}: {error.reason}")
                raise CommandError(f"{len(report.errors)} error(s) in {file}; nothing was imported.")
        self.stdout.write(f"Imported {report.created} prompts ({report.existing} already present)")

    def _queue(self, name: str, *, create: bool, kind: str | None) -> Queue:
        if create:
            queue, created = Queue.objects.get_or_create(name=name, defaults={"task_kind": kind or Queue.Kinds.RANKING})
            if not created and kind and queue.task_kind != kind:
                raise CommandError(f"The queue {name!r} exists and asks for {queue.task_kind}, not {kind}.")
            if created:
                record_instructions(queue)
            return queue
        try:
            return Queue.objects.get(name=name)
        except Queue.DoesNotExist:
            raise CommandError(f"There is no queue named {name!r}; add --create to make one.") from None

"""manage.py prune_exports: delete the files of export snapshots older than EXPORT_RETENTION_DAYS, now.

Beat does the same every hour (labeling.tasks.prune_exports_task); both call labeling.datasets.exports.prune_exports.
"""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labeling.datasets.exports import prune_exports


class Command(BaseCommand):
    help = "Delete the files and cards of export snapshots older than EXPORT_RETENTION_DAYS; keep their records."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int,
            help=f"Keep this many days, not EXPORT_RETENTION_DAYS ({settings.EXPORT_RETENTION_DAYS}); 0 keeps all.",
        )  # fmt: skip

    def handle(self, *args, days=None, **options):
        if days is not None and days < 0:
            raise CommandError("--days must be 0 (keep everything) or more.")
        pruned = prune_exports(days=days)
        for snapshot in pruned:
            self.stdout.write(f"removed {snapshot.file} ({snapshot.bytes} bytes)")
        self.stdout.write(f"{len(pruned)} export snapshot{'s' if len(pruned) != 1 else ''} expired.")

"""manage.py rebuild_agreement: count the stored agreement figures of queues from their labels again.

Run it once after migration 0013 (otherwise each queue is counted at its next ranking), or to repair the
figures of a queue (say, after labels were deleted by hand). See labeling.quality.aggregates.
"""
from django.core.management.base import BaseCommand, CommandError

from labeling.models import Queue
from labeling.quality.aggregates import rebuild_queue_agreement


class Command(BaseCommand):
    help = "Count the stored agreement figures of every queue (or of the given queue ids) from their labels again."

    def add_arguments(self, parser):
        parser.add_argument("queue_ids", nargs="*", type=int, help="Queue ids; every queue when none is given.")

    def handle(self, *args, queue_ids=(), **options):
        queues = Queue.objects.order_by("pk")
        if queue_ids:
            missing = sorted(set(queue_ids) - set(queues.filter(pk__in=queue_ids).values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"No queue with id {missing[0]}.")
            queues = queues.filter(pk__in=queue_ids)
        for queue in queues:
            totals = rebuild_queue_agreement(queue_id=queue.pk)
            rate = "not enough data" if not totals.n else f"{totals.agree / totals.n:.3f} over {totals.n:,} pairs"
            self.stdout.write(f"queue {queue.pk} “{queue.name}”: {rate}, {totals.prompts:,} prompts shared")

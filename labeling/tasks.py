"""Celery tasks of the labeling app: thin wrappers that load a row, call a service, store the result."""
import logging

from celery import shared_task

from .datasets.exports import build_export, prune_exports
from .models import ExportSnapshot
from .quality.aggregates import count_all_backlogs, count_backlog, refresh_intervals, refresh_prompt_agreement
from .queues.importing import run_import

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def run_import_job(job_id: int) -> None:
    """Import an uploaded file into its queue and record the outcome on the ImportJob."""
    run_import(job_id)


@shared_task(acks_late=True)
def build_export_task(snapshot_id: int) -> None:
    """Build an export snapshot; build_export records a failure on the snapshot itself."""
    snapshot = ExportSnapshot.objects.select_related("created_by").get(pk=snapshot_id)
    if snapshot.is_finished:
        return  # a redelivered message (acks_late): the first run's file and figures stand
    try:
        build_export(snapshot)
    except Exception:
        log.exception("export snapshot %s failed", snapshot_id)


# Hourly on the default queue (settings.CELERY_BEAT_SCHEDULE): files older than EXPORT_RETENTION_DAYS go.
@shared_task
def prune_exports_task() -> int:
    return len(prune_exports())


# Sent at most once per AGREEMENT_BACKLOG_SECONDS per queue once a ranking is committed
# (labeling.quality.aggregates.wake_worker): counts every ranking stored since, in batches.
@shared_task(acks_late=True)
def count_backlog_task(queue_id: int) -> int:
    return count_backlog(queue_id=queue_id)


# Each minute (settings.CELERY_BEAT_SCHEDULE): the backlogs whose wake was lost with the broker.
@shared_task
def count_all_backlogs_task() -> int:
    return count_all_backlogs()


# What a ranking sent before the backlog existed: messages of an older release may still be in the broker.
@shared_task(acks_late=True)
def refresh_prompt_agreement_task(prompt_id: int) -> None:
    refresh_prompt_agreement(prompt_id=prompt_id)


# Sent at most once per AGREEMENT_INTERVALS_SECONDS per queue; reads every prompt's counts of the queue.
@shared_task(acks_late=True)
def refresh_agreement_intervals_task(queue_id: int) -> None:
    refresh_intervals(queue_id=queue_id)

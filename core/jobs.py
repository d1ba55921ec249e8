"""The lifecycle of a worker job (import, export, pair dataset, generation job, training run), in one place.

- One status vocabulary (JobStatus) and the fields every job has (WorkerJob, an abstract model); long jobs
  that resume after a lost worker add attempts and a heartbeat (ResumableJob).
- Sending its task once the transaction that made the job commits (WorkerJob.send_task, delay_on_commit);
  if the broker cannot take it, the job is failed with the reason instead of waiting as "queued" forever.
- One way to end a job (WorkerJob.finish) and to record a failure (WorkerJob.fail).
- A long job's sign of life: its row's heartbeat_at, written every few seconds while it runs (Heartbeat), so
  that a redelivered message (a dead worker, or Redis's visibility timeout) can tell a job alive on another
  worker from one whose worker died (claim), and the beat can send again the jobs that lost their worker or
  their message (resend_stale).
"""
import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # training runs: ML staff asked to stop it
    EXPIRED = "expired"  # exports: succeeded, then the retention rule deleted the files


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


class WorkerJob(models.Model):
    """What every worker job has: a status, when it was asked for and when it ended."""

    Status = JobStatus

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def finish(cls, pk: int, status: str, **fields) -> None:
        cls.objects.filter(pk=pk).update(status=status, finished_at=timezone.now(), **fields)

    @classmethod
    def failure_fields(cls, reason: str) -> dict:
        """Where a job keeps the reason it failed (a job without an `error` field says otherwise)."""
        return {"error": reason}

    @classmethod
    def fail(cls, pk: int, reason: str) -> None:
        cls.finish(pk, JobStatus.FAILED, **cls.failure_fields(reason))

    def send_task(self, task) -> None:
        """Have the worker run `task(self.pk)` once this transaction commits; a broker that cannot take the
        message fails the job with the reason."""
        delay_on_commit(task, self.pk, on_failure=lambda reason: type(self).fail(self.pk, reason))


class ResumableJob(WorkerJob):
    """A long job that a worker claims, keeps alive with a heartbeat and, if the worker dies, resumes."""

    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started or resumed it.")
    # Written every few seconds while a worker runs it, so a redelivered message can tell whether the job
    # is still alive elsewhere; on a queued job, when the beat last sent it again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


# Times workers may start one job (a training run, a generation job) before it is failed with the reason:
# a job that kills its worker each time (out of memory) must not be retried forever.
MAX_ATTEMPTS = 3
# A queued long job is sent again after this long: its message may have been lost (a broker restarted without
# its data). A duplicate is harmless: claim() drops a message for a job that is running or finished.
RESEND_QUEUED_AFTER = timedelta(minutes=10)


def delay_on_commit(task, *args, on_failure) -> None:
    """Send `task` once the current transaction commits (so the worker sees the rows it needs).

    If the broker cannot take the message (Redis down), `on_failure(reason)` records that on the
    job's row, so the job says why instead of waiting as "queued" forever.
    """

    def send() -> None:
        try:
            task.delay(*args)
        except Exception as error:  # kombu's OperationalError and whatever else the transport raises
            on_failure(f"The task queue could not be reached ({error}). Nothing was lost: try again later.")

    transaction.on_commit(send)


def lost_before(now: datetime) -> datetime:
    """A running job whose heartbeat is older than this (RUN_HEARTBEAT_TIMEOUT ago) has lost its worker."""
    return now - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)


def heartbeat_seconds() -> float:
    """Four beats per RUN_HEARTBEAT_TIMEOUT, between 0.5 and 15 seconds."""
    return max(0.5, min(15.0, settings.RUN_HEARTBEAT_TIMEOUT / 4))


class Heartbeat(threading.Thread):
    """Sets heartbeat_at on the rows of `running` (a queryset) every few seconds, however long one step of
    the job takes; stop it with `stopped.set()`."""

    def __init__(self, running):
        super().__init__(daemon=True)
        self.running = running
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(heartbeat_seconds()):
                self.running.update(heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection


def claim(
    model: type[ResumableJob], pk: int, *, lost_reason: str, related: tuple[str, ...] = ()
) -> ResumableJob | None:
    """Take the job for this worker, or None if it is finished, cancelled or alive on another worker.

    A message is redelivered when its worker died (or, on Redis, after the visibility timeout while it still
    works); the heartbeat tells the two apart. After MAX_ATTEMPTS starts the job is failed with
    `lost_reason` (formatted with `attempts`), so a job that kills its worker is not retried forever.
    """
    now = timezone.now()
    with transaction.atomic():
        job = model.objects.select_for_update().select_related(*related).get(pk=pk)
        if job.is_finished:
            return None
        if job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at >= lost_before(now):
            return None  # a duplicate message: another worker runs this job right now
        if getattr(job, "cancel_requested", False):
            model.finish(job.pk, JobStatus.CANCELLED)
            return None
        if job.attempts >= MAX_ATTEMPTS:
            model.fail(job.pk, lost_reason.format(attempts=job.attempts))
            return None
        job.status, job.attempts, job.heartbeat_at = JobStatus.RUNNING, job.attempts + 1, now
        job.started_at = job.started_at or now
        job.save(update_fields=["status", "attempts", "heartbeat_at", "started_at"])
    return job


def resend_stale(model: type[ResumableJob], task) -> int:
    """Send again the jobs that lost their worker or their message; returns how many were sent.

    A running job whose heartbeat is older than RUN_HEARTBEAT_TIMEOUT goes back to "queued"; a queued job
    goes out again once it has waited RESEND_QUEUED_AFTER (a message lost with a broker that restarted
    without its data, or a send that failed here). A queued job's heartbeat_at is when it was last
    sent again, which spaces the copies out; `claim` takes a queued job whatever its heartbeat_at, and the
    copies after it find the job running or finished and drop themselves. `claim` fails it after
    MAX_ATTEMPTS starts.
    """
    now = timezone.now()
    lost_worker = Q(status=JobStatus.RUNNING, heartbeat_at__lt=lost_before(now))
    lost_message = Q(status=JobStatus.QUEUED, created_at__lt=now - RESEND_QUEUED_AFTER) & (
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - RESEND_QUEUED_AFTER)
    )
    stale = model.objects.filter(lost_worker | lost_message)
    sent = 0
    for pk in stale.values_list("pk", flat=True):
        # Conditional: of two beat processes (or a worker claiming it meanwhile), one wins.
        if not stale.filter(pk=pk).update(status=JobStatus.QUEUED, heartbeat_at=now):
            continue
        try:
            task.delay(pk)
        except Exception as error:  # the broker is down: the job stays queued and is sent again later
            log.warning("%s %s could not be sent again: %s", model._meta.verbose_name, pk, error)
            continue
        log.info("%s %s sent again", model._meta.verbose_name, pk)
        sent += 1
    return sent

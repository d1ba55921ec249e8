"""The lifecycle of a worker job (import, export, pair dataset, generation job, training run).

Sending its task once the transaction that made the job commits (delay_on_commit), and a long job's sign of
life: its row's heartbeat_at, written every few seconds while it runs, so that a redelivered message (a dead
worker, or Redis's visibility timeout) can tell a job alive on another worker from one whose worker died.
"""
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

# Times workers may start one job (a training run, a generation job) before it is failed with the reason:
# a job that kills its worker each time (out of memory) must not be retried forever.
MAX_ATTEMPTS = 3


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

"""The Celery app. Broker and options come from Django settings (CELERY_* names)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

app = Celery("annotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def delay_on_commit(task, *args, on_failure) -> None:
    """Send `task` once the current transaction commits (so the worker sees the rows it needs).

    If the broker cannot take the message (Redis down), `on_failure(reason)` records that on the
    job's row, so the job says why instead of waiting as "queued" forever.
    """
    from django.db import transaction

    def send() -> None:
        try:
            task.delay(*args)
        except Exception as error:  # kombu's OperationalError and whatever else the transport raises
            on_failure(f"The task queue could not be reached ({error}). Nothing was lost: try again later.")

    transaction.on_commit(send)

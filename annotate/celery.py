"""The Celery app. Broker and options come from Django settings (CELERY_* names).

Sending a task once a transaction commits is core.jobs.delay_on_commit.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

app = Celery("annotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


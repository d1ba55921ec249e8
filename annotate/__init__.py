"""The Django project shell: settings, URLs, the Celery app, the health check and the database-lost middleware.

It holds no domain code: the apps (core, labeling, rewardtrain) never import it; the shared kernel is core.
"""
from .celery import app as celery_app

__all__ = ("celery_app",)

"""The kernel's data: API tokens and the audit log.

Both tables were made by the labeling app and keep their names (db_table); core/migrations/0001_initial.py
took them over without touching the database.
"""
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class ApiToken(models.Model):
    """A named key for scripts calling /api/v1/ as its user; only the key's SHA-256 is stored.

    core.tokens issues, revokes and checks them. A revoked token stays listed, so its owner sees what
    stopped working and why.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. “nightly export script”.")
    key_hash = models.CharField(max_length=64, unique=True)
    # The key's first characters, to tell tokens apart in the list and in a script's config.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "labeling_apitoken"  # made by the labeling app before core held it
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class AuditEvent(models.Model):
    """One admin or ML action (queue change, import, export, dataset, run, model, token, prompt decision).

    core.audit.record writes them, in the transaction of the change they describe. The actor's
    username is copied so that the event still says who after the account is deleted.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=50, help_text="A dotted name, e.g. queue.update or model.activate.")
    # What the action was on: "app_label.model", its primary key, and its str() at the time.
    target_type = models.CharField(max_length=100, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "labeling_auditevent"  # made by the labeling app before core held it
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["action", "created_at"], name="audit_action_created")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_name or 'system'}"

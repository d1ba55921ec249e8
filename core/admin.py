"""Django admin (/django-admin/) for superusers: API tokens."""
from django.contrib import admin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Superusers may see and revoke (set revoked_at) anyone's tokens; keys are never shown, only hashed."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    readonly_fields = ["user", "key_hash", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are issued on /ml/tokens/, where the key is shown once

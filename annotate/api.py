"""What every endpoint under /api/v1/ shares: pagination, role permissions, strict bodies, errors.

The endpoints themselves live with their data (labeling.api, rewardtrain.api); annotate.api_urls
puts them under one router.
"""
from rest_framework import pagination, permissions, serializers
from rest_framework.views import exception_handler as drf_exception_handler

from labeling.roles import has_role


class CursorPagination(pagination.CursorPagination):
    """Stable pages over tables that grow while a script reads them; newest first unless ?ordering=."""

    ordering = "-pk"
    page_size_query_param = "page_size"
    max_page_size = 500


def role_permission(role: str) -> type[permissions.BasePermission]:
    """A permission class that lets in users who hold `role` (superusers hold every role)."""

    class HasRole(permissions.BasePermission):
        message = f"This endpoint needs the {role} role."

        def has_permission(self, request, view) -> bool:
            return has_role(request.user, role)

    HasRole.__name__ = f"Has{role.capitalize()}Role"
    return HasRole


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them, instead of silently ignoring a typo."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown field {name!r}. Allowed: {', '.join(sorted(writable))}."] for name in unknown}
                )
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


def exception_handler(exc, context):
    """DRF's handler; kept as the one place to shape API errors."""
    return drf_exception_handler(exc, context)

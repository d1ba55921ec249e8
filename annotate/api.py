"""What every endpoint under /api/v1/ shares: tokens, pagination, role permissions, strict bodies, body
limits, file downloads.

The endpoints themselves live with their data (labeling.api, rewardtrain.api); annotate.api_urls
puts them under one router.
"""
import hashlib
import io
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, pagination, parsers, permissions, serializers, status
from rest_framework.response import Response

from labeling import audit
from labeling.models import ApiToken
from labeling.roles import ML, has_role

TOKEN_PREFIX = "ann_"
# Writing last_used_at on every request would make each API call a write; a minute is precise enough.
LAST_USED_PRECISION = timedelta(minutes=1)


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(*, user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user` and its key, which is shown once: only its hash is kept."""
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, key_hash=_hash_key(key), prefix=key[:10])
        audit.record(actor=user, action="token.create", target=token, detail={"name": name, "prefix": token.prefix})
    return token, key


def revoke_token(*, token: ApiToken, user=None) -> None:
    """Revoke the token (once); `user` is who did it, its owner unless given."""
    with transaction.atomic():
        if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit.record(actor=user or token.user, action="token.revoke", target=token, detail={"owner": token.user_id})


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`) with a key from /ml/tokens/.

    Tokens are for ML staff's scripts: a token whose user no longer holds the ml role is refused.
    """

    keywords = ("token", "bearer")

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower().decode(errors="replace") not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: give the key after 'Token ', with no spaces.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = ApiToken.objects.select_related("user").filter(key_hash=_hash_key(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_revoked:
            raise exceptions.AuthenticationFailed("This token was revoked.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is deactivated.")
        if not has_role(token.user, ML):
            raise exceptions.PermissionDenied("The token's user no longer holds the ml role.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"  # so that a request without credentials gets 401, not 403


class TokenScheme(OpenApiAuthenticationExtension):
    """Describes TokenAuthentication in the OpenAPI schema (Swagger UI's "Authorize" button)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (or `Bearer <key>`), with a key made on /ml/tokens/.",
        }


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class JSONParser(parsers.BaseParser):
    """JSON with a size limit that gives a clear 413 (Django's own limit answers an HTML 400).

    DRF reads a JSONParser subclass's body through request.body, capped by DATA_UPLOAD_MAX_MEMORY_SIZE;
    this parser reads the stream itself, so a view may allow more with a `max_body_bytes` attribute
    (the push of prompts does), and everything else keeps DATA_UPLOAD_MAX_MEMORY_SIZE.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        limit = getattr(context.get("view"), "max_body_bytes", None) or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1)  # never more than the limit in memory
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit:,} bytes; send less at once.")
        return parsers.JSONParser().parse(io.BytesIO(body), media_type, parser_context)


class CursorPagination(pagination.CursorPagination):
    """Stable pages over tables that grow while a script reads them; newest first unless ?ordering=."""

    ordering = "-pk"
    page_size_query_param = "page_size"
    max_page_size = 500


def role_permission(*roles: str) -> type[permissions.BasePermission]:
    """A permission class that lets in users who hold any of `roles` (superusers hold every role)."""

    class HasRole(permissions.BasePermission):
        message = f"This endpoint needs the {' or '.join(roles)} role."

        def has_permission(self, request, view) -> bool:
            return any(has_role(request.user, role) for role in roles)

    HasRole.__name__ = "Has" + "Or".join(role.capitalize() for role in roles) + "Role"
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


class Detail(serializers.Serializer):
    detail = serializers.CharField()


def download_schema(*, summary: str, file: str, example: str, more: dict | None = None):
    """The schema of a `download` action that answers a finished job's file, or 409 while it is not finished;
    `more`: other responses by status."""
    return extend_schema(
        summary=summary,
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description=file),
            409: OpenApiResponse(Detail, description="Not finished (yet), or failed."),
            **(more or {}),
        },
        examples=[
            OpenApiExample(
                "Not finished yet",
                value={"detail": f"{example} is running; download it once it has succeeded."},
                response_only=True,
                status_codes=["409"],
            )
        ],
    )


def finished_file(job, *, path: Path, filename: str, content_type: str | None = None):
    """The file of a finished job (export, pair dataset) as an attachment; 409 saying why while it is not."""
    if job.status != "succeeded":
        reason = f": {job.error}" if job.error else ""
        return Response(
            {"detail": f"{job} is {job.status}{reason}; download it once it has succeeded."},
            status=status.HTTP_409_CONFLICT,
        )
    if not path.is_file():
        raise exceptions.NotFound(f"The file of {job} is no longer there.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=filename, content_type=content_type)

"""API tokens: issued and revoked on /ml/tokens/ (core.token_views), checked on every /api/v1/ request that
sends one (TokenAuthentication). Only a key's SHA-256 is stored (ApiToken)."""
import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from . import audit
from .models import ApiToken
from .roles import ML, has_role

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

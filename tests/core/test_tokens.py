"""API tokens: made on /ml/tokens/ (key shown once, only its hash kept), used, revoked, refused."""
import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.models import ApiToken
from core.tokens import issue_token
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

QUEUES = "/api/v1/queues/"


def create_on_page(client, name: str) -> str:
    response = client.post(reverse("ml-tokens"), {"name": name})
    assert response.status_code == 200
    match = re.search(r'id="new-key" type="text" readonly value="([^"]+)"', response.content.decode())
    assert match, "the new key is shown"
    return match.group(1)


def test_ml_staff_make_a_token_whose_key_is_shown_once_and_stored_only_as_a_hash(client, ml_user, api):
    client.force_login(ml_user)
    key = create_on_page(client, "nightly export")
    token = ApiToken.objects.get(user=ml_user)
    assert token.name == "nightly export"
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix) and len(token.prefix) < len(key)
    assert not ApiToken.objects.filter(key_hash=key).exists()

    listing = client.get(reverse("ml-tokens")).content.decode()
    assert key not in listing  # shown once only
    assert token.prefix in listing and "nightly export" in listing and "never" in listing

    assert api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert api.get(QUEUES, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_token_names_are_escaped_on_the_page(client, ml_user):
    client.force_login(ml_user)
    client.post(reverse("ml-tokens"), {"name": "<script>alert(1)</script>"})
    page = client.get(reverse("ml-tokens")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_empty_name_is_refused_and_nothing_made(client, ml_user):
    client.force_login(ml_user)
    response = client.post(reverse("ml-tokens"), {"name": ""})
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_last_used_is_written_at_most_once_a_minute(api, ml_user):
    token, key = issue_token(user=ml_user, name="t")
    recent = timezone.now() - timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recent)
    api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}")
    token.refresh_from_db()
    assert token.last_used_at == recent

    old = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=old)
    api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}")
    token.refresh_from_db()
    assert token.last_used_at > old + timedelta(minutes=1)


def test_a_revoked_token_gets_401_and_stays_listed(client, ml_user, api):
    client.force_login(ml_user)
    key = create_on_page(client, "old script")
    token = ApiToken.objects.get()
    assert client.get(reverse("ml-token-revoke", args=[token.pk])).status_code == 405
    response = client.post(reverse("ml-token-revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None

    refused = api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "This token was revoked."}
    page = client.get(reverse("ml-tokens")).content.decode()
    assert "old script" in page and "revoked" in page


def test_revoking_needs_the_csrf_token(ml_user):
    token, _ = issue_token(user=ml_user, name="t")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(ml_user)
    assert strict.post(reverse("ml-token-revoke", args=[token.pk])).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None


def test_nobody_revokes_another_users_token(client, ml_user):
    token, _ = issue_token(user=ml_user, name="mine")
    client.force_login(make_user("other-ml", "ml"))
    assert client.post(reverse("ml-token-revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "mine" not in client.get(reverse("ml-tokens")).content.decode()


def test_unknown_and_malformed_tokens_get_401(api, db):
    response = api.get(QUEUES, HTTP_AUTHORIZATION="Token ann_not-a-real-key")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}
    assert api.get(QUEUES, HTTP_AUTHORIZATION="Token a b").status_code == 401
    anonymous = api.get(QUEUES)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"


def test_a_token_stops_working_when_its_user_loses_the_ml_role(api, ml_user):
    _, key = issue_token(user=ml_user, name="t")
    assert api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    ml_user.groups.remove(Group.objects.get(name="ml"))
    ml_user.groups.add(Group.objects.get_or_create(name="admin")[0])  # another role does not keep it alive
    response = api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403
    assert "ml role" in response.json()["detail"]


def test_a_deactivated_users_token_gets_401(api, ml_user):
    _, key = issue_token(user=ml_user, name="t")
    ml_user.is_active = False
    ml_user.save()
    assert api.get(QUEUES, HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


@pytest.mark.parametrize("roles", [("labeler",), ("admin",)])
def test_other_roles_may_not_use_the_tokens_page(client, roles):
    user = make_user("someone", *roles)
    client.force_login(user)
    assert client.get(reverse("ml-tokens")).status_code == 403
    assert client.post(reverse("ml-tokens"), {"name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client, db):
    response = client.get(reverse("ml-tokens"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_the_nav_links_to_tokens_and_docs_for_ml_staff_only(client, ml_user, labeler):
    client.force_login(ml_user)
    page = client.get(reverse("ml-tokens")).content.decode()
    assert f'href="{reverse("ml-tokens")}"' in page and f'href="{reverse("api-docs")}"' in page
    client.force_login(labeler)
    home = client.get(reverse("home")).content.decode()
    assert reverse("ml-tokens") not in home

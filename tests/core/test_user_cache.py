"""The signed-in user and their roles come from the cache (core.roles.CachedUserBackend): no query for them on a
signed-in request, and every change of a user or of their groups is seen by their next request."""
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.roles import LABELER
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _user_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code == 200
    return [q["sql"] for q in queries if '"auth_user"' in q["sql"] or '"auth_group"' in q["sql"]]


def test_a_signed_in_request_reads_neither_the_user_nor_the_groups_once_cached(client, labeler):
    client.force_login(labeler)
    assert _user_queries(client)  # the first request reads them
    assert _user_queries(client) == []


def test_a_role_taken_away_is_seen_by_the_next_request(client, labeler, ranking_queue):
    client.force_login(labeler)
    assert client.get(f"/queues/{ranking_queue.pk}/next/").status_code == 302
    labeler.groups.remove(Group.objects.get(name=LABELER))
    assert client.get(f"/queues/{ranking_queue.pk}/next/").status_code == 403
    Group.objects.get(name=LABELER).user_set.add(labeler)  # the reverse side of the relation too
    assert client.get(f"/queues/{ranking_queue.pk}/next/").status_code == 302
    Group.objects.get(name=LABELER).user_set.clear()
    assert client.get(f"/queues/{ranking_queue.pk}/next/").status_code == 403


def test_a_deactivated_or_deleted_user_is_signed_out_at_once(client, labeler, labeler2):
    client.force_login(labeler)
    assert client.get("/").status_code == 200
    labeler.is_active = False
    labeler.save()
    assert client.get("/")["Location"].startswith("/login/")
    client.force_login(labeler2)
    assert client.get("/").status_code == 200
    labeler2.delete()
    assert client.get("/")["Location"].startswith("/login/")


def test_a_new_password_ends_the_other_sessions(client, labeler):
    client.force_login(labeler)
    assert client.get("/").status_code == 200
    labeler.set_password("a new long passphrase")
    labeler.save()
    assert client.get("/")["Location"].startswith("/login/")


def test_a_stale_entry_of_another_user_with_the_same_id_signs_nobody_in(client, labeler):
    """A cache that outlived its database (a test run, a restored backup) may hold another user under this id:
    Django's password-hash check of the session refuses it, and the request is anonymous."""
    from django.core.cache import cache

    from core.roles import _user_key

    client.force_login(labeler)
    impostor = make_user("impostor", "admin")
    User.objects.filter(pk=impostor.pk).delete()  # no signal: its row stays in the cache below
    impostor.pk = labeler.pk
    cache.set(_user_key(labeler.pk), impostor)
    assert client.get("/")["Location"].startswith("/login/")

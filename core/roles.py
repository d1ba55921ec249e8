"""The three roles, as Django groups, and the checks pages use.

labeler: labels tasks. admin: manages queues and imports. ml: exports data and trains models.
A superuser holds every role.

The signed-in user and their role names come from the cache (CachedUserBackend): without it every request read the
user's row and their groups from the database before doing anything else.
"""
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

LABELER = "labeler"
ADMIN = "admin"
ML = "ml"
ROLES = (LABELER, ADMIN, ML)


def has_role(user, role: str) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._role_names = cached
    return role in cached


def role_required(role: str):
    """Anonymous users go to the login page; signed-in users without the role get 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def roles_context(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"roles": {}}
    return {"roles": {role: has_role(user, role) for role in ROLES}}


# A cached user is dropped when the user is saved or deleted or their groups change; a change that sends no signal
# (a queryset update) is seen within this many seconds.
USER_CACHE_SECONDS = 300


def _user_key(user_id) -> str:
    return f"auth-user:{user_id}"


class CachedUserBackend(ModelBackend):
    """Django's ModelBackend, but the user of each request, with their role names, is read from the cache. Django
    still checks the session's password hash against the user it gets, so a stale entry can never sign a request
    in as someone else."""

    def get_user(self, user_id):
        user = cache.get(_user_key(user_id))
        if user is None:
            user = super().get_user(user_id)
            if user is None:
                return None
            user._role_names = set(user.groups.values_list("name", flat=True))
            cache.set(_user_key(user_id), user, USER_CACHE_SECONDS)
        return user if self.user_can_authenticate(user) else None


def forget_user(user_id) -> None:
    """Drop the cached user once the change commits (a request in between would cache the old row again)."""
    transaction.on_commit(lambda: cache.delete(_user_key(user_id)))
    cache.delete(_user_key(user_id))


def _user_changed(sender, instance, **kwargs):
    forget_user(instance.pk)


def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:  # user.groups.add(...): the instance is the user
        forget_user(instance.pk)
    elif action == "pre_clear":  # group.user_set.clear(): its users, while they are still in it
        for user_id in instance.user_set.values_list("pk", flat=True):
            forget_user(user_id)
    else:  # group.user_set.add(...): pk_set holds the users
        for user_id in pk_set:
            forget_user(user_id)


def connect_user_cache() -> None:
    """Called by the core app's ready()."""
    User = get_user_model()
    post_save.connect(_user_changed, sender=User, dispatch_uid="roles-user-saved")
    post_delete.connect(_user_changed, sender=User, dispatch_uid="roles-user-deleted")
    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="roles-groups-changed")

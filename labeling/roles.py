"""The three roles, as Django groups, and the checks pages use.

labeler: labels tasks. admin: manages queues and imports. ml: exports data and trains models.
A superuser holds every role.
"""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

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

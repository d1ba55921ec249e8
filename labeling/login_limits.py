"""Limits on failed logins, per username and per client address, counted in Django's cache.

After settings.LOGIN_FAILURE_LIMIT failures for one username (or LOGIN_FAILURE_IP_LIMIT from one
address) in one window of LOGIN_FAILURE_WINDOW seconds, the login page answers 429 without checking the
password until the window ends. Windows are fixed (clock time // window), so a count needs no expiry of
its own. docs/security.md says why the cache must be shared by every web process.
"""
import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache

from . import audit

_PREFIX = "login-failures"


def _window() -> int:
    return int(time.time() // settings.LOGIN_FAILURE_WINDOW)


def seconds_left_in_window() -> int:
    return math.ceil(settings.LOGIN_FAILURE_WINDOW - time.time() % settings.LOGIN_FAILURE_WINDOW)


def _key(kind: str, value: str) -> str:
    # Hashed: a username is user input, and cache backends limit a key's length and characters.
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    return f"{_PREFIX}:{kind}:{_window()}:{digest}"


def _keys(*, username: str, ip: str) -> list[tuple[str, int]]:
    keys = [(_key("ip", ip), settings.LOGIN_FAILURE_IP_LIMIT)]
    if username:
        keys.append((_key("user", username.strip().lower()), settings.LOGIN_FAILURE_LIMIT))
    return keys


def _client_ip(request) -> str:
    # One reading of settings.CLIENT_IP_HEADER, shared with the audit log.
    return audit.client_ip(request) or request.META.get("REMOTE_ADDR") or ""


def login_blocked(*, username: str, ip: str) -> bool:
    """True when the username or the address has used up its failed logins for now."""
    keys = _keys(username=username, ip=ip)
    counts = cache.get_many([key for key, _ in keys])
    return any(counts.get(key, 0) >= limit for key, limit in keys)


def record_login_failure(*, username: str, ip: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW
    for key, _ in _keys(username=username, ip=ip):
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)  # atomic on Redis
        except ValueError:  # evicted between add() and incr()
            cache.set(key, 1, timeout=window)
        # The file and database caches' incr() sets their default expiry (300 s); keep the whole window.
        cache.touch(key, window)


def clear_login_failures(*, username: str) -> None:
    """A correct password ends that username's count (not the address's: others may be guessing)."""
    cache.delete(_key("user", username.strip().lower()))


class RateLimitedLoginView(LoginView):
    """Django's login page, refusing with 429 once login_blocked() says so."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username, ip = request.POST.get("username", ""), _client_ip(request)
        if login_blocked(username=username, ip=ip):
            seconds = seconds_left_in_window()
            minutes = math.ceil(seconds / 60)
            context = self.get_context_data(
                form=self.get_form_class()(request),
                rate_limited=f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            )
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(seconds)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        record_login_failure(username=self.request.POST.get("username", ""), ip=_client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        clear_login_failures(username=form.get_user().get_username())
        return super().form_valid(form)

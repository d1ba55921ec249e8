"""Limits on failed logins, counted in Django's cache in fixed windows of LOGIN_FAILURE_WINDOW seconds.

Three counts, each with its limit: one username from one address (LOGIN_FAILURE_LIMIT), one address
(LOGIN_FAILURE_IP_LIMIT) and one username from everywhere (LOGIN_FAILURE_USER_LIMIT, much higher). Once
a count reaches its limit the login page answers 429 without checking the password until the window
ends. Keying the low limit on the pair means a stranger who fails on a username locks only themselves
out; the per-username limit still caps guessing spread over many addresses. Windows are clock time //
window, so a count needs no expiry of its own. docs/security.md says why the cache must be shared by
every web process.
"""
import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.views import LoginView
from django.core import checks
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


def normalize_username(username: str) -> str:
    """The account a username logs in to, as one string for every spelling of it.

    The login form strips the name and applies NFKC before authenticating, so "ｌａｂｅｌｅｒ３" and "𝐥abeler3"
    log in as labeler3; counting the raw text would give each spelling five more tries. Case-folded too,
    so that case variants share one count.
    """
    return AbstractBaseUser.normalize_username(username.strip()).casefold()


def _keys(*, username: str, ip: str) -> list[tuple[str, int]]:
    keys = [(_key("ip", ip), settings.LOGIN_FAILURE_IP_LIMIT)]
    username = normalize_username(username)
    if username:
        keys.append((_pair_key(username=username, ip=ip), settings.LOGIN_FAILURE_LIMIT))
        keys.append((_key("user", username), settings.LOGIN_FAILURE_USER_LIMIT))
    return keys


def _pair_key(*, username: str, ip: str) -> str:
    return _key("user-ip", f"{username}\n{ip}")  # an address holds no newline: each pair gives its own text


def _client_ip(request) -> str:
    # One reading of settings.CLIENT_IP_HEADER, shared with the audit log.
    return audit.client_ip(request) or request.META.get("REMOTE_ADDR") or ""


def login_blocked(*, username: str, ip: str) -> bool:
    """True when the username at this address, the address, or the username has used up its failed logins."""
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


def clear_login_failures(*, username: str, ip: str) -> None:
    """A correct password ends the count of that username at that address.

    Not the address's (others behind it may be guessing) nor the username's (others elsewhere may be).
    """
    cache.delete(_pair_key(username=normalize_username(username), ip=ip))


def check_client_ip_header(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """annotate.W001 (check --deploy): behind a TLS proxy, REMOTE_ADDR is the proxy's address for every client."""
    behind_proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None) is not None
    if settings.DEBUG or not behind_proxy or settings.CLIENT_IP_HEADER != "REMOTE_ADDR":
        return []
    return [
        checks.Warning(
            "SECURE_PROXY_SSL_HEADER is set but CLIENT_IP_HEADER is REMOTE_ADDR: behind the proxy every client has"
            " the proxy's address, so LOGIN_FAILURE_IP_LIMIT failed logins by anyone lock everyone out, and the"
            " audit log records the proxy.",
            hint="Have the proxy set a header it overwrites (nginx: proxy_set_header X-Real-IP $remote_addr;)"
            " and set CLIENT_IP_HEADER=HTTP_X_REAL_IP.",
            id="annotate.W001",
        )
    ]


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
        clear_login_failures(username=form.get_user().get_username(), ip=_client_ip(self.request))
        return super().form_valid(form)

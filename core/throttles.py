"""Per-user limits on the expensive actions, one count per action shared by the API and the pages.

Each action has a scope (SCOPES) and a rate, REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (THROTTLE_<SCOPE> in the
environment), read at request time so that a test or a settings change takes effect at once; a scope without
a rate is not limited. The counting is DRF's SimpleRateThrottle: each user's recent request times in
Django's cache, so every web process shares them when the cache is shared (CACHE_URL=redis://… in
production; files in var/cache for the processes of one machine otherwise).

The API refuses with 429, `{"detail": …}` and Retry-After (DRF's handler); a page shows the same words at its
top and answers 429 with Retry-After too, keeping what was typed in its form. The API counts every POST to
the action, a page only a form that passed its checks (a typo costs nothing).
"""
import math

from django.contrib import messages
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .api import Detail

# What each scope counts, in the words of the message.
SCOPES = {
    "exports": "exports",
    "datasets": "pair datasets",
    "runs": "training runs",
    "generation": "generation jobs",
    "push": "pushes of prompts",
    "score": "scoring requests",
}
_PERIODS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


class ActionThrottle(SimpleRateThrottle):
    """Counts one user's uses of one action (`scope`); anonymous requests by address (they seldom get this far)."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def get_rate(self) -> str | None:
        # Not the class attribute THROTTLE_RATES, frozen when DRF was imported: the settings as they are now.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def wait(self) -> int:
        # The request is allowed again when the oldest of the last `num_requests` leaves the window (history is
        # newest first). DRF's own estimate spreads the wait over the requests left and can be None.
        oldest = self.history[min(self.num_requests, len(self.history)) - 1]
        return max(1, math.ceil(oldest + self.duration - self.now))


def limit_message(scope: str, wait: int, *, rate: str | None = None) -> str:
    """E.g. "Too many exports: at most 30 per hour for each user. Try again in 12 minutes."."""
    throttle = ActionThrottle(scope)
    if rate is not None:
        throttle.num_requests, throttle.duration = throttle.parse_rate(rate)
    period = _PERIODS[throttle.duration]
    when = f"{wait} second{'s' if wait != 1 else ''}" if wait < 120 else f"{math.ceil(wait / 60)} minutes"
    return f"Too many {SCOPES[scope]}: at most {throttle.num_requests} per {period} for each user. Try again in {when}."


class ActionThrottled(exceptions.Throttled):
    """DRF's 429, with a message naming the action and its limit (the handler adds Retry-After)."""

    def __init__(self, scope: str, wait: int):
        super().__init__(detail=limit_message(scope, wait))  # no wait here: DRF would append its own sentence
        self.wait = wait


class ThrottledActionsMixin:
    """For a viewset: `throttle_scopes` maps its expensive actions (create, push_prompts, score…) to their scope."""

    throttle_scopes: dict[str, str] = {}

    def get_throttles(self):
        scope = self.throttle_scopes.get(getattr(self, "action", None))
        return [*super().get_throttles(), ActionThrottle(scope)] if scope else super().get_throttles()

    def throttled(self, request, wait):
        raise ActionThrottled(self.throttle_scopes[self.action], math.ceil(wait))


def check_page(request, scope: str) -> int | None:
    """For a page whose valid form is about to start an action: count it against the user's `scope`. Over the
    limit, the message goes to the top of the page and the seconds to wait are returned (pass them to `respond`);
    the page shows the form again as it was sent."""
    throttle = ActionThrottle(scope)
    if throttle.allow_request(request, None):
        return None
    wait = throttle.wait()
    messages.error(request, limit_message(scope, wait))
    return wait


def respond(response, wait: int | None):
    """The page as rendered; 429 with Retry-After when `check_page` refused (a page, not a bare error)."""
    if wait is not None:
        response.status_code = 429
        response["Retry-After"] = str(wait)
    return response


def request_page(request, form, *, scope: str, template: str, context, start):
    """A page that lists jobs and asks for a new one (exports, pair datasets, runs, generation jobs).

    A valid POST within the user's `scope` rate calls `start(form)`, which asks the service for the job and
    returns where to go next; a ValueError the service raises is shown on the form. Otherwise the page again,
    with the form's errors, or with 429 and the wait when over the rate; `context()` gives the rest of what
    the page shows (called only then).
    """
    wait = None
    if request.method == "POST" and form.is_valid() and not (wait := check_page(request, scope)):
        try:
            return start(form)
        except ValueError as error:
            form.add_error(None, str(error))
    return respond(render(request, template, {"form": form, **context()}), wait)


# The schema's 429, for every throttled operation: responses={…, 429: throttled_response("exports")} and
# parameters=[RETRY_AFTER].
RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429],
    description="Seconds until the action is allowed again.",
)  # fmt: skip


def throttled_response(scope: str) -> OpenApiResponse:
    """The 429 of `scope`; its example shows the rate this server runs with (or a made-up one when it is off)."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope) or "30/hour"
    example = limit_message(scope, ActionThrottle(scope).parse_rate(rate)[1] // 5, rate=rate)
    return OpenApiResponse(
        Detail,
        description=f"Too many {SCOPES[scope]} by this user (the limit is THROTTLE_{scope.upper()}); nothing was "
        "done. Retry-After gives the seconds to wait.",
        examples=[
            OpenApiExample("Over the limit", value={"detail": example}, response_only=True, status_codes=["429"])
        ],
    )

"""A lost database connection answers 503 "nothing was saved, submit again", not a bare 500.

When PostgreSQL drops the connection (restart, failover, a killed backend) the server rolls back the
request's transaction, and every write a label makes is one transaction, so the labeler can safely
submit again. Django closes the broken connection when the request ends; the next one reconnects.
The page is rendered without the request's context: anything needing the database would fail again.
"""
import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "The database could not be reached, so nothing of this request was saved. Please try again."


def _wants_json(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def _back_url(request) -> str:
    if request.method != "POST":
        return request.get_full_path()
    # The page the form was sent from (the labeler's task, still holding their work), if it is ours.
    referer = request.headers.get("Referer", "")
    if url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return referer
    return "/"


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.error("Database unavailable during %s %s", request.method, request.path, exc_info=exception)
        if _wants_json(request):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            html = render_to_string("503.html", {"back_url": _back_url(request), "was_post": request.method == "POST"})
            response = HttpResponse(html, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

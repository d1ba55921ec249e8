"""What every endpoint under /api/v1/ shares: session authentication, pagination, role permissions, strict
bodies, body limits, filters, file downloads (API tokens: core.tokens).

The endpoints themselves live with their data (labeling.api, rewardtrain.api); annotate.api_urls
puts them under one router.
"""
from pathlib import Path

import django_filters
import drf_spectacular.authentication
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import FileResponse, QueryDict
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, pagination, parsers, permissions, serializers, status
from rest_framework.response import Response

from . import jsonlimits
from .roles import has_role

# Ids are bigint on every database; a number outside this range in a filter or cursor names nothing.
MIN_BIGINT, MAX_BIGINT = -(2**63), 2**63 - 1
# A request body's whole number goes to some integer column, and every backend's IntegerField holds this.
MIN_INT, MAX_INT = -(2**31), 2**31 - 1


class _NoFormBody:
    """The request as Django's CSRF check sees it, without a form body.

    The check looks for the token in request.POST, and a DRF request's POST parses the body, whatever its
    type, before the permissions are checked: a user without the role got the body's parse error (or a
    500) instead of 403. The API takes JSON only, so the token can only come in the X-CSRFToken header.
    """

    POST = QueryDict()

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return getattr(self._request, name)


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, with a CSRF check that leaves the body unread (see _NoFormBody)."""

    def enforce_csrf(self, request):
        super().enforce_csrf(_NoFormBody(request._request))


class SessionScheme(drf_spectacular.authentication.SessionScheme):
    """Describes SessionAuthentication in the OpenAPI schema, as drf-spectacular does DRF's."""

    target_class = SessionAuthentication


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class JSONParser(parsers.BaseParser):
    """JSON with a size limit that gives a clear 413 (Django's own limit answers an HTML 400), read by
    core.jsonlimits: too deep a nesting or a number too large for any column is a 400 saying so.

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
        try:
            return jsonlimits.loads(body.decode(context.get("encoding") or settings.DEFAULT_CHARSET))
        except ValueError as error:  # JSONInputError, or bytes that are not in the request's encoding
            raise exceptions.ParseError(f"JSON parse error - {error}") from None


class CursorPagination(pagination.CursorPagination):
    """Stable pages over tables that grow while a script reads them; newest first unless ?ordering=.

    A cursor is the client's to edit: one that does not decode, or whose position is not a value of the
    ordering field, is a 400 naming `cursor` (DRF answers 404 to the first, and 500 to the second when
    the query fails on it).
    """

    ordering = "-pk"
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            valid = cursor is None or cursor.position is None or self._valid_position(cursor.position)
        if not valid:
            raise serializers.ValidationError({self.cursor_query_param: [f"{self.invalid_cursor_message}."]})
        return cursor

    def _valid_position(self, position: str) -> bool:
        """Whether `position` is a value of the field the page is ordered by (the first of self.ordering)."""
        name = self.ordering[0].lstrip("-")
        try:
            field = self._model._meta.pk if name == "pk" else self._model._meta.get_field(name)
            value = field.to_python(position)
        except (FieldDoesNotExist, DjangoValidationError, ValueError, TypeError):
            return False
        return not isinstance(value, int) or MIN_BIGINT <= value <= MAX_BIGINT


class FilterSet(django_filters.FilterSet):
    """The base of every API filter set: a number in a filter must fit a bigint column.

    Beyond it, a filter on a foreign key across joins fails on the database (bigint overflow on
    PostgreSQL, OverflowError on SQLite) instead of finding nothing; refused here, it is a 400 naming
    the parameter. Filters on a model (ModelChoiceFilter) look the id up with a lookup Django guards.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for filter_ in self.filters.values():  # this instance's copies
            if isinstance(filter_, django_filters.NumberFilter):
                filter_.extra["validators"] = [
                    *filter_.extra.get("validators", []), MinValueValidator(MIN_BIGINT), MaxValueValidator(MAX_BIGINT)
                ]


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with FilterSet (above) under every endpoint's filters."""

    filterset_base = FilterSet

    def get_filterset_class(self, view, queryset=None):
        filterset_class = super().get_filterset_class(view, queryset)
        if filterset_class is not None and not issubclass(filterset_class, FilterSet):
            raise ImproperlyConfigured(f"{filterset_class.__name__} must subclass core.api.FilterSet.")
        return filterset_class


def parse_id(value: str, *, parameter: str) -> int | None:
    """`value` as an id if it is written in ASCII digits (None if it is not); 400 naming `parameter` if no id
    is that large."""
    if not (value.isascii() and value.isdigit()):
        return None
    if len(value.lstrip("0")) > len(str(MAX_BIGINT)) or int(value) > MAX_BIGINT:
        raise serializers.ValidationError({parameter: [f"No id is larger than {MAX_BIGINT}."]})
    return int(value)


def role_permission(*roles: str) -> type[permissions.BasePermission]:
    """A permission class that lets in users who hold any of `roles` (superusers hold every role)."""

    class HasRole(permissions.BasePermission):
        message = f"This endpoint needs the {' or '.join(roles)} role."

        def has_permission(self, request, view) -> bool:
            return any(has_role(request.user, role) for role in roles)

    HasRole.__name__ = "Has" + "Or".join(role.capitalize() for role in roles) + "Role"
    return HasRole


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them, instead of silently ignoring a typo.

    A whole number field that sets no bounds of its own takes those of an IntegerField column, so that a
    number too large is a 400 naming it, not a database error when it is stored (a model serializer's
    fields take their model field's bounds).
    """

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            if isinstance(field, serializers.IntegerField) and not field.read_only:
                _bound(field, MIN_INT, MAX_INT)
        return fields

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown field {name!r}. Allowed: {', '.join(sorted(writable))}."] for name in unknown}
                )
        return super().to_internal_value(data)


def _bound(field: serializers.IntegerField, low: int, high: int) -> None:
    """Give `field` the bounds it lacks, with DRF's own messages (what min_value and max_value would do)."""
    if field.min_value is None:
        field.min_value = low
        message = field.error_messages["min_value"].format(min_value=low)
        field.validators.append(MinValueValidator(low, message=message))
    if field.max_value is None:
        field.max_value = high
        message = field.error_messages["max_value"].format(max_value=high)
        field.validators.append(MaxValueValidator(high, message=message))


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


class Detail(serializers.Serializer):
    detail = serializers.CharField()


def read_schemas(example: dict, *, many: tuple[str, str], one: tuple[str, str], description: str | None = None):
    """A viewset's list and retrieve operations for extend_schema_view(**read_schemas(...)): a summary and a
    response example each; `many` and `one` are (summary, example name), `description` is the list's."""
    described = {"description": description} if description else {}
    return {
        "list": extend_schema(
            summary=many[0], examples=[OpenApiExample(many[1], value=example, response_only=True)], **described
        ),
        "retrieve": extend_schema(summary=one[0], examples=[OpenApiExample(one[1], value=example, response_only=True)]),
    }


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

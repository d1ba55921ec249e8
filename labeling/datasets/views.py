"""Export snapshots for ML staff: the pages (ask for one, follow it, download it) and the API viewset.

Thin: checking, versioning and building are labeling.datasets.exports services (request_export, build_export),
the same ones `manage.py export` calls.
"""
from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core import throttles
from core.api import (
    Detail,
    FilterSet,
    StrictSerializer,
    download_schema,
    finished_file,
    read_schemas,
    role_permission,
)
from core.roles import ML, role_required

from ..models import ExportSnapshot, Queue
from . import exports
from .filters import describe_filters, labeler_names
from .forms import DatasetForm


def _download(snapshot: ExportSnapshot, *, card: bool = False) -> FileResponse:
    """The snapshot's data file (or card) as an attachment; 404 unless it succeeded and the file is there."""
    if snapshot.status != ExportSnapshot.Status.SUCCEEDED:
        raise Http404(f"Export {snapshot} is {snapshot.status}.")
    path = exports.artifact(snapshot.card if card else snapshot.file)
    if not path.is_file():
        raise Http404(f"The file of export {snapshot} is no longer there.")
    if card:
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=f"{snapshot}-README.md",
            content_type="text/markdown; charset=utf-8",
        )  # fmt: skip
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=f"{snapshot}.{snapshot.format}",
        content_type=exports.CONTENT_TYPES[snapshot.format],
    )  # fmt: skip


# Pages --------------------------------------------------------------------------------------------


class ExportForm(DatasetForm):
    """The dataset form (name, queues, label filters) plus dataset and format."""

    dataset = forms.ChoiceField(choices=ExportSnapshot.Dataset.choices)
    format = forms.ChoiceField(choices=ExportSnapshot.Format.choices, initial="jsonl")
    field_order = ["name", "dataset", "format", "queues"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].help_text = "Letters, digits, - and _; each export adds a version (support-pairs-v3)."
        for key in ("min_agreement", "min_gold_accuracy"):
            self.fields[key].help_text += " Ranking figures; for sft, their demonstrations in that queue go too."


@role_required(ML)
def export_list(request):
    def start(form):
        data = form.cleaned_data
        snapshot = exports.request_export(
            name=data["name"], dataset=data["dataset"], fmt=data["format"], queues=list(data["queues"]),
            filters=form.filters(), user=request.user,
        )  # fmt: skip
        messages.success(request, f"Exporting {snapshot}; the worker is on it.")
        return redirect("ml-export", snapshot.pk)

    def context():
        snapshots = list(ExportSnapshot.objects.select_related("created_by").prefetch_related("queues"))
        names = labeler_names(snapshot.filters for snapshot in snapshots)
        rows = [(snapshot, describe_filters(snapshot.filters, names)) for snapshot in snapshots]
        return {"rows": rows, "retention_days": settings.EXPORT_RETENTION_DAYS}

    return throttles.request_page(
        request, ExportForm(request.POST or None), scope="exports", template="labeling/datasets/export_list.html",
        context=context, start=start,
    )  # fmt: skip


def _snapshot(snapshot_id: int) -> ExportSnapshot:
    return get_object_or_404(ExportSnapshot.objects.select_related("created_by").prefetch_related("queues"),
                             pk=snapshot_id)  # fmt: skip


@role_required(ML)
def export_detail(request, snapshot_id: int):
    return _detail(request, _snapshot(snapshot_id))


def _detail(request, snapshot: ExportSnapshot, *, status: int = 200):
    card = ""
    if snapshot.status == ExportSnapshot.Status.SUCCEEDED and snapshot.card:
        path = exports.artifact(snapshot.card)
        if path.is_file():
            # The YAML front matter is for the Hub; the page shows the card's text below it.
            card = path.read_text(encoding="utf-8").split("\n---\n", 1)[-1]
    expired = exports.expired_message(snapshot) if snapshot.status == ExportSnapshot.Status.EXPIRED else ""
    return render(
        request,
        "labeling/datasets/export_detail.html",
        {"snapshot": snapshot, "filters": describe_filters(snapshot.filters), "card": card, "expired": expired},
        status=status,
    )


@role_required(ML)
def export_download(request, snapshot_id: int):
    snapshot = _snapshot(snapshot_id)
    if snapshot.status == ExportSnapshot.Status.EXPIRED:
        return _detail(request, snapshot, status=410)  # an old link gets the page saying why, not a bare error
    return _download(snapshot)


@role_required(ML)
def export_card(request, snapshot_id: int):
    snapshot = _snapshot(snapshot_id)
    if snapshot.status == ExportSnapshot.Status.EXPIRED:
        return _detail(request, snapshot, status=410)
    return _download(snapshot, card=True)


# API ----------------------------------------------------------------------------------------------


class ExportSnapshotSerializer(serializers.ModelSerializer):
    label = serializers.CharField(source="__str__", read_only=True, help_text="name-vN, e.g. support-pairs-v3.")
    # A string, not an enum in the schema: a second set of choices named "status" (rewardtrain's has "cancelled")
    # makes drf-spectacular warn unless SPECTACULAR_SETTINGS names both with ENUM_NAME_OVERRIDES.
    status = serializers.CharField(
        read_only=True,
        help_text="queued, running, succeeded, failed, or expired (succeeded; then the retention rule removed its "
        "file, at expired_at, after retention_days days).",
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = ExportSnapshot
        fields = [
            "id", "label", "name", "version", "dataset", "format", "queues", "filters", "status", "error", "rows",
            "bytes", "sha256", "created_by", "created_at", "started_at", "finished_at", "expired_at", "retention_days",
        ]  # fmt: skip
        read_only_fields = fields


class ExportRequest(StrictSerializer):
    name = serializers.SlugField(max_length=100, help_text="Versions count up per name: support-pairs-v1, -v2, …")
    dataset = serializers.ChoiceField(choices=ExportSnapshot.Dataset.choices)
    format = serializers.ChoiceField(choices=ExportSnapshot.Format.choices)
    queues = serializers.PrimaryKeyRelatedField(many=True, queryset=Queue.objects.all(), allow_empty=False)
    filters = serializers.DictField(
        required=False,
        default=dict,
        help_text="date_from, date_to (YYYY-MM-DD), labeler_ids, exclude_skipped, exclude_flagged, min_agreement, "
        "min_gold_accuracy (0 to 1: labelers below them in a queue are left out).",
    )


class ExportSnapshotFilter(FilterSet):
    class Meta:
        model = ExportSnapshot
        fields = ["dataset", "status", "name"]


EXPORT_EXAMPLE = {
    "id": 12, "label": "support-pairs-v3", "name": "support-pairs", "version": 3, "dataset": "pairs",
    "format": "parquet", "queues": [3], "filters": {"exclude_flagged": True, "min_agreement": 0.6},
    "status": "succeeded", "error": "", "rows": 5400, "bytes": 812345,
    "sha256": "9f2c4e0b5d1a7c3e8f6b2a4d9e0c1b3a5f7d9e2c4b6a8d0f1e3c5a7b9d2f4e6a", "created_by": "mlstaff",
    "created_at": "2026-11-30T11:00:00Z", "started_at": "2026-11-30T11:00:01Z", "finished_at": "2026-11-30T11:00:04Z",
    "expired_at": None, "retention_days": None,
}  # fmt: skip


EXPIRED_RESPONSE = OpenApiResponse(
    Detail,
    description="Expired: the retention rule (EXPORT_RETENTION_DAYS) removed the file; the record stays.",
    examples=[
        OpenApiExample(
            "Expired",
            value={"detail": "The file of support-pairs-v3 was removed on 2026-12-30 04:00 by the retention rule "
                   "(exports are kept 30 days); export it again for a new copy."},  # fmt: skip
            response_only=True,
            status_codes=["410"],
        )
    ],
)


@extend_schema_view(
    **read_schemas(
        EXPORT_EXAMPLE, many=("Export snapshots", "A page of exports"), one=("One export snapshot", "An export"),
        description="Newest first unless ?ordering=; filter by dataset, status or name.",
    ),
    create=extend_schema(
        summary="Export a dataset",
        description="Records the next version of `name` and has the worker write it; poll `status`, then download.",
        request=ExportRequest,
        responses={201: ExportSnapshotSerializer, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="Bad input, "
                   "by field."), 429: throttles.throttled_response("exports")},  # fmt: skip
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Pairs without low-agreement labelers",
                value={"name": "support-pairs", "dataset": "pairs", "format": "parquet", "queues": [3],
                       "filters": {"exclude_flagged": True, "min_agreement": 0.6}},  # fmt: skip
                request_only=True,
            ),
            OpenApiExample(
                "Queued",
                value=EXPORT_EXAMPLE | {"status": "queued", "rows": 0, "bytes": 0, "sha256": "", "started_at": None,
                                        "finished_at": None},  # fmt: skip
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "Bad filter",
                value={"filters": ["min_agreement must be a number from 0 to 1, not 2."]},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    ),
)
class ExportSnapshotViewSet(throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                            mixins.CreateModelMixin, viewsets.GenericViewSet):  # fmt: skip
    permission_classes = [permissions.IsAuthenticated, role_permission(ML)]
    throttle_scopes = {"create": "exports"}
    serializer_class = ExportSnapshotSerializer
    queryset = ExportSnapshot.objects.select_related("created_by").prefetch_related("queues")
    filterset_class = ExportSnapshotFilter
    ordering_fields = ["id", "created_at", "rows", "bytes"]

    def create(self, request):
        body = ExportRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            snapshot = exports.request_export(
                name=data["name"], dataset=data["dataset"], fmt=data["format"], queues=data["queues"],
                filters=data["filters"], user=request.user,
            )  # fmt: skip
        except ValueError as error:  # the fields are checked above: what is left is a filter
            raise serializers.ValidationError({"filters": [str(error)]}) from None
        return Response(ExportSnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)

    @download_schema(
        summary="Download the export's data file",
        file="The data file (JSONL, CSV or Parquet), as an attachment.",
        example="support-pairs-v3",
        more={410: EXPIRED_RESPONSE},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        snapshot = self.get_object()
        if snapshot.status == ExportSnapshot.Status.EXPIRED:
            return Response({"detail": exports.expired_message(snapshot)}, status=status.HTTP_410_GONE)
        return finished_file(
            snapshot, path=exports.artifact(snapshot.file), filename=f"{snapshot}.{snapshot.format}",
            content_type=exports.CONTENT_TYPES[snapshot.format],
        )  # fmt: skip

"""REST endpoints of labeling (under /api/v1/): queues, prompts (read, and push with answers), labels.

Thin: the rules live in the services they call (labeling.queues.services, labeling.queues.importing) and in the
querysets here, which decide who sees what. Labelers see the queues open to them and only their own
labels, never which items are gold.
"""
import django_filters
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core import throttles
from core.api import FilterSet, StrictModelSerializer, StrictSerializer, parse_id, read_schemas, role_permission
from core.roles import ADMIN, LABELER, ML, has_role

from .assignment.services import queues_open_to
from .models import Answer, AnswerLabel, Demonstration, Prompt, Queue, Ranking
from .queues.importing import push_rows
from .queues.services import queue_settings, save_queue


def _is_staff(user) -> bool:
    """Admins and ML staff see every queue and every label; a labeler only their own."""
    return has_role(user, ADMIN) or has_role(user, ML)


# Queues -------------------------------------------------------------------------------------------


class QueueSerializer(StrictModelSerializer):
    prompt_count = serializers.IntegerField(read_only=True, help_text="Prompts in the queue, excluded ones too.")

    class Meta:
        model = Queue
        fields = [
            "id", "name", "instructions", "instructions_version", "task_kind", "demonstration_overlap",
            "ranking_overlap", "priority", "lease_seconds", "is_open", "gold_rate", "gold_threshold", "created_at",
            "prompt_count",
        ]  # fmt: skip
        read_only_fields = ["instructions_version", "created_at"]


QUEUE_EXAMPLE = {
    "id": 3, "name": "helpfulness", "instructions": "Rank the answers by helpfulness.", "instructions_version": 2,
    "task_kind": "ranking", "demonstration_overlap": 1, "ranking_overlap": 3, "priority": 0, "lease_seconds": 1800,
    "is_open": True, "gold_rate": 0.05, "gold_threshold": 0.7, "created_at": "2026-11-30T09:00:00Z",
    "prompt_count": 1200,
}  # fmt: skip


class PushRequest(StrictSerializer):
    prompts = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text="Rows in the JSONL import format: prompt, answers (strings or {text, model, meta}), id, meta, "
        "priority. At most MAX_IMPORT_ROWS rows.",
    )


class PushResult(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField(help_text="Rows already in the queue (same id, or same content without id).")


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Index of the row in `prompts`, from 0.")
    message = serializers.CharField()


class PushErrors(serializers.Serializer):
    # Bad rows give `errors`; a body that is not JSON gives `detail`, a bad `prompts` field its errors by field.
    errors = RowErrorSerializer(many=True, required=False, help_text="The rows in error.")
    detail = serializers.CharField(required=False, help_text="Why the body could not be read.")


@extend_schema_view(
    **read_schemas(
        QUEUE_EXAMPLE, many=("Queues you may see", "A page of queues"), one=("One queue", "A queue"),
        description="Admins and ML staff see every queue; a labeler sees the open queues they may work on.",
    ),
    create=extend_schema(
        summary="Create a queue (admin)",
        examples=[
            OpenApiExample(
                "A ranking queue",
                value={"name": "helpfulness", "instructions": "Rank the answers.", "task_kind": "ranking"},
                request_only=True,
            ),
            OpenApiExample("Created", value=QUEUE_EXAMPLE, response_only=True),
        ],
    ),
    partial_update=extend_schema(
        summary="Change a queue (admin)",
        description="Changed instructions become a new instructions version, as on the queue page.",
        examples=[
            OpenApiExample("Pause a queue", value={"is_open": False}, request_only=True),
            OpenApiExample("Changed", value=QUEUE_EXAMPLE | {"is_open": False}, response_only=True),
        ],
    ),
)
class QueueViewSet(
    throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, viewsets.GenericViewSet,
):  # fmt: skip
    serializer_class = QueueSerializer
    throttle_scopes = {"push_prompts": "push"}
    filterset_fields = ["task_kind", "is_open"]
    ordering_fields = ["id", "created_at", "priority"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_permissions(self):
        if self.action in ("create", "partial_update", "update"):
            roles = (ADMIN,)
        elif self.action == "push_prompts":
            roles = (ADMIN, ML)
        else:
            roles = (LABELER, ADMIN, ML)
        return [permissions.IsAuthenticated(), role_permission(*roles)()]

    def get_queryset(self):
        user = self.request.user
        if getattr(self, "swagger_fake_view", False):  # the schema generator asks with no user
            return Queue.objects.none()
        queues = Queue.objects.all() if _is_staff(user) else queues_open_to(user)
        return queues.annotate(prompt_count=Count("prompts"))

    @property
    def max_body_bytes(self) -> int | None:
        """A push may be larger than other bodies (core.api.JSONParser reads this)."""
        return settings.MAX_API_PUSH_BYTES if getattr(self, "action", None) == "push_prompts" else None

    def perform_create(self, serializer) -> None:
        # An edit's settings as stored, before the serializer writes to the queue (for the audit log).
        before = queue_settings(serializer.instance) if serializer.instance is not None else None
        with transaction.atomic():
            queue = serializer.save()
            save_queue(queue, user=self.request.user, before=before)
        queue.prompt_count = queue.prompts.count()  # what get_queryset annotates, for the response

    perform_update = perform_create

    @extend_schema(
        summary="Push prompts with sampled answers (admin, ML)",
        description="The rows of a JSONL import, checked the same way; all or nothing, and idempotent by `id` "
        "(or by content for rows without one). 201 when rows were created, 200 when all were already there. "
        "Bodies over MAX_API_PUSH_BYTES get 413.",
        request=PushRequest,
        responses={201: PushResult, 200: PushResult, 400: PushErrors, 429: throttles.throttled_response("push")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Two prompts",
                value={
                    "prompts": [
                        {"id": "p-1", "prompt": "Name a prime.", "answers": ["7", {"text": "9", "model": "small"}]},
                        {"id": "p-2", "prompt": "Say hi.", "answers": ["Hi!", "Hello."], "priority": 5},
                    ]
                },
                request_only=True,
            ),
            OpenApiExample("Created", value={"created": 2, "existing": 0}, response_only=True, status_codes=["201"]),
            OpenApiExample(
                "A bad row",
                value={"errors": [{"row": 1, "message": "The row has 10 answers; at most 9 are allowed."}]},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    @action(detail=True, methods=["post"], url_path="prompts")
    def push_prompts(self, request, pk=None):
        queue = self.get_object()
        body = PushRequest(data=request.data)
        body.is_valid(raise_exception=True)
        records = body.validated_data["prompts"]
        report = push_rows(queue=queue, records=records, user=request.user)
        if report.errors:
            errors = [{"row": error.line, "message": error.reason} for error in report.errors]
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        result = {"created": report.created, "existing": report.existing}
        return Response(result, status=status.HTTP_201_CREATED if report.created else status.HTTP_200_OK)


# Prompts ------------------------------------------------------------------------------------------


class AnswerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Answer
        fields = ["id", "position", "text", "model", "meta"]


class PromptSerializer(serializers.ModelSerializer):
    answers = AnswerSerializer(many=True, read_only=True)

    class Meta:
        model = Prompt
        fields = ["id", "queue", "external_id", "text", "meta", "priority", "excluded", "created_at", "answers"]


class PromptFilter(FilterSet):
    created_after = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="Created on or after this date (YYYY-MM-DD)."
    )
    created_before = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="Created on or before this date (YYYY-MM-DD)."
    )

    class Meta:
        model = Prompt
        fields = ["queue", "excluded"]


PROMPT_EXAMPLE = {
    "id": 41, "queue": 3, "external_id": "p-1", "text": "Name a prime.", "meta": {}, "priority": 0,
    "excluded": False, "created_at": "2026-11-30T09:05:00Z",
    "answers": [
        {"id": 301, "position": 0, "text": "7", "model": "", "meta": {}},
        {"id": 302, "position": 1, "text": "9", "model": "small", "meta": {}},
    ],
}  # fmt: skip


@extend_schema_view(
    **read_schemas(
        PROMPT_EXAMPLE, many=("Prompts with their answers (admin, ML)", "A page of prompts"),
        one=("One prompt with its answers (admin, ML)", "A prompt"),
    ),
)
class PromptViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PromptSerializer
    permission_classes = [permissions.IsAuthenticated, role_permission(ADMIN, ML)]
    queryset = Prompt.objects.prefetch_related("answers")
    filterset_class = PromptFilter
    ordering_fields = ["id", "created_at"]


# Demonstrations and rankings ----------------------------------------------------------------------


class LabelFilter(FilterSet):
    """Filters shared by demonstrations and rankings; both reach their prompt through the assignment."""

    queue = django_filters.NumberFilter(field_name="assignment__task__prompt__queue", label="Queue id.")
    prompt = django_filters.NumberFilter(field_name="assignment__task__prompt", label="Prompt id.")
    labeler = django_filters.CharFilter(method="filter_labeler", label="Labeler id or username.")
    created_after = PromptFilter.base_filters["created_after"]
    created_before = PromptFilter.base_filters["created_before"]

    def filter_labeler(self, queryset, name, value):
        labeler_id = parse_id(value, parameter=name)
        if labeler_id is not None:
            return queryset.filter(assignment__labeler_id=labeler_id)
        return queryset.filter(assignment__labeler__username=value)


class LabelSerializer(serializers.ModelSerializer):
    """What a demonstration and a ranking both say about how the label was made."""

    prompt = serializers.IntegerField(source="assignment.task.prompt_id", read_only=True)
    queue = serializers.IntegerField(source="assignment.task.prompt.queue_id", read_only=True)
    labeler = serializers.CharField(source="assignment.labeler.username", read_only=True)
    time_spent_ms = serializers.IntegerField(source="assignment.time_spent_ms", read_only=True, allow_null=True)
    instructions_version = serializers.IntegerField(
        source="assignment.instructions_version", read_only=True, allow_null=True
    )

    LABEL_FIELDS = ["id", "prompt", "queue", "labeler", "time_spent_ms", "instructions_version", "created_at"]


class DemonstrationSerializer(LabelSerializer):
    class Meta:
        model = Demonstration
        fields = [*LabelSerializer.LABEL_FIELDS, "text"]


class AnswerLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnswerLabel
        fields = ["answer", "rank", "rating", "flags"]


class RankingSerializer(LabelSerializer):
    groups = serializers.JSONField(help_text="Tie groups of answer ids, best first: [[3], [5, 7], [4]].")
    answers = AnswerLabelSerializer(source="answer_labels", many=True, read_only=True)

    class Meta:
        model = Ranking
        fields = [*LabelSerializer.LABEL_FIELDS, "groups", "answers"]


class StaffRankingSerializer(RankingSerializer):
    """What admins and ML staff see: also whether the prompt is a gold item, and its reference ranking."""

    gold_groups = serializers.SerializerMethodField(help_text="The gold reference ranking, or null.")

    class Meta(RankingSerializer.Meta):
        fields = [*RankingSerializer.Meta.fields, "gold_groups"]

    @extend_schema_field(OpenApiTypes.ANY)
    def get_gold_groups(self, ranking: Ranking):
        return ranking.assignment.task.gold_groups


class DocumentedRankingSerializer(RankingSerializer):
    """What the schema says a ranking is: gold_groups is there only for admins and ML staff."""

    gold_groups = serializers.JSONField(
        required=False, allow_null=True, help_text="Admins and ML staff only: the gold reference ranking, or null."
    )

    class Meta(RankingSerializer.Meta):
        fields = [*RankingSerializer.Meta.fields, "gold_groups"]


def _own_labels(queryset, user):
    return queryset if _is_staff(user) else queryset.filter(assignment__labeler=user)


LABEL_EXAMPLE = {
    "id": 12, "prompt": 41, "queue": 3, "labeler": "ana", "time_spent_ms": 48200, "instructions_version": 2,
    "created_at": "2026-11-30T10:00:00Z",
}  # fmt: skip
DEMONSTRATION_EXAMPLE = LABEL_EXAMPLE | {"text": "2 is the smallest prime."}
RANKING_EXAMPLE = LABEL_EXAMPLE | {
    "groups": [[301], [302]],
    "answers": [
        {"answer": 301, "rank": 1, "rating": 6, "flags": []},
        {"answer": 302, "rank": 2, "rating": 2, "flags": ["hallucination"]},
    ],
    "gold_groups": None,
}


class _LabelViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [permissions.IsAuthenticated, role_permission(LABELER, ADMIN, ML)]
    filterset_class = LabelFilter
    ordering_fields = ["id", "created_at"]


@extend_schema_view(
    **read_schemas(
        DEMONSTRATION_EXAMPLE, many=("Demonstrations", "A page of demonstrations"),
        one=("One demonstration", "A demonstration"),
        description="Admins and ML staff see all; a labeler sees their own.",
    ),
)
class DemonstrationViewSet(_LabelViewSet):
    serializer_class = DemonstrationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Demonstration.objects.none()
        demonstrations = Demonstration.objects.select_related("assignment__task__prompt", "assignment__labeler")
        return _own_labels(demonstrations, self.request.user)


@extend_schema_view(
    **read_schemas(
        RANKING_EXAMPLE, many=("Rankings", "A page of rankings"), one=("One ranking", "A ranking"),
        description="Admins and ML staff see all, with `gold_groups`; a labeler sees their own, without it.",
    ),
)
class RankingViewSet(_LabelViewSet):
    serializer_class = StaffRankingSerializer

    def get_serializer_class(self):
        if getattr(self, "swagger_fake_view", False):
            return DocumentedRankingSerializer
        return StaffRankingSerializer if _is_staff(self.request.user) else RankingSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Ranking.objects.none()
        rankings = Ranking.objects.select_related("assignment__task__prompt", "assignment__labeler").prefetch_related(
            "answer_labels"
        )
        # A labeler sees all their rankings, gold or not, in the same fields (RankingSerializer): leaving
        # out the gold ones told them which prompts are gold the moment a ranking of theirs disappeared.
        return _own_labels(rankings, self.request.user)

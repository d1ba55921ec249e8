"""REST endpoints of rewardtrain (under /api/v1/), for ML staff: pair datasets, training runs, reward models,
policies, SFT runs, policy runs and evaluation rounds.

Thin: building, training, cancelling, activating, registering and evaluating are rewardtrain.datasets / runs /
registry / policies / sft_runs / evaluation services, the same ones the pages call.
"""
from pathlib import Path

import django_filters
from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core import throttles
from core.api import (
    Detail,
    FilterSet,
    StrictModelSerializer,
    StrictSerializer,
    download_schema,
    finished_file,
    read_schemas,
    role_permission,
)
from core.roles import ML
from core.slots import NoFreeSlot, slot
from labeling.datasets.filters import FilterError
from labeling.models import Queue

from . import datasets, evaluation, evaluation_selectors, policies, policy_runs, registry, runs, sft_runs
from .models import EvaluationRound, PairDataset, Policy, PolicyRun, RewardModel, SFTRun, TrainingRun

MAX_SCORED_ANSWERS = 64
SCORE_RETRY_SECONDS = 2  # a full-size score takes about that long on a 2-core CPU (docs/api.md)


class _MLViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated, role_permission(ML)]
    ordering_fields = ["id", "created_at"]


class _CancelMixin:
    """POST …/{id}/cancel/ for a training job (rewardtrain.runs.cancel_run); its audit action is `cancel_action`."""

    cancel_action = "run.cancel"

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        runs.cancel_run(run, user=request.user, action=self.cancel_action)
        run.refresh_from_db()
        return Response(self.get_serializer(run).data)


def cancel_schema(what: str, serializer, example: dict):
    return extend_schema(
        summary=f"Cancel {what}",
        description="A queued run is cancelled at once; a running one stops at its next step.",
        request=None,
        responses={200: serializer},
        examples=[OpenApiExample("Stopping", value=example | {"status": "running", "cancel_requested": True},
                                 response_only=True)],  # fmt: skip
    )


# Pair datasets ------------------------------------------------------------------------------------


class PairDatasetSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = PairDataset
        fields = [
            "id", "name", "version", "queues", "filters", "validation_fraction", "seed", "status", "error",
            "build_notes", "rows", "train_rows", "validation_rows", "prompts", "rankings", "sha256", "created_by",
            "created_at", "finished_at",
        ]  # fmt: skip


class PairDatasetRequest(StrictSerializer):
    name = serializers.SlugField(max_length=100, help_text="Versions count up per name: helpful-v1, helpful-v2, …")
    queues = serializers.PrimaryKeyRelatedField(many=True, queryset=Queue.objects.all(), allow_empty=False)
    filters = serializers.DictField(
        required=False,
        default=dict,
        help_text="date_from, date_to (YYYY-MM-DD), labeler_ids, exclude_skipped, exclude_flagged, source "
        "('labelers' or 'consensus'), min_rankings, min_agreement, min_gold_accuracy.",
    )
    validation_fraction = serializers.FloatField(min_value=0.01, max_value=0.9, default=0.1)
    seed = serializers.IntegerField(default=0)


class PairDatasetFilter(FilterSet):
    queue = django_filters.NumberFilter(field_name="queues", label="Datasets built from this queue (id).")

    class Meta:
        model = PairDataset
        fields = ["status", "name"]


DATASET_EXAMPLE = {
    "id": 5, "name": "helpful", "version": 2, "queues": [3], "filters": {"source": "labelers", "min_agreement": 0.6},
    "validation_fraction": 0.1, "seed": 0, "status": "succeeded", "error": "", "build_notes": {"left_out_labelers": []},
    "rows": 5400, "train_rows": 4860, "validation_rows": 540, "prompts": 600, "rankings": 1800,
    "sha256": "9f2c…", "created_by": "mlstaff", "created_at": "2026-11-30T11:00:00Z",
    "finished_at": "2026-11-30T11:00:09Z",
}  # fmt: skip


@extend_schema_view(
    **read_schemas(
        DATASET_EXAMPLE, many=("Pair datasets", "A page of datasets"), one=("One pair dataset", "A dataset"),
    ),
    create=extend_schema(
        summary="Build a pair dataset",
        description="Records the next version of `name` and has the worker build it; poll `status`.",
        request=PairDatasetRequest,
        responses={201: PairDatasetSerializer, 429: throttles.throttled_response("datasets")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Consensus pairs",
                value={"name": "helpful", "queues": [3], "filters": {"source": "consensus"}, "seed": 1},
                request_only=True,
            ),
            OpenApiExample(
                "Queued", value=DATASET_EXAMPLE | {"status": "queued", "rows": 0}, response_only=True
            ),
        ],
    ),
)
class PairDatasetViewSet(throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         mixins.CreateModelMixin, _MLViewSet):  # fmt: skip
    serializer_class = PairDatasetSerializer
    throttle_scopes = {"create": "datasets"}
    queryset = PairDataset.objects.select_related("created_by").prefetch_related("queues")
    filterset_class = PairDatasetFilter

    def create(self, request):
        body = PairDatasetRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            dataset = datasets.request_pair_dataset(
                name=data["name"],
                queues=data["queues"],
                filters=data["filters"],
                validation_fraction=data["validation_fraction"],
                seed=data["seed"],
                user=request.user,
            )
        except ValueError as error:  # the service names the bad filter
            raise serializers.ValidationError({"filters": [str(error)]}) from None
        return Response(PairDatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @download_schema(summary="Download the dataset's Parquet file", file="The Parquet file.", example="helpful-v2")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        dataset = self.get_object()
        path = Path(settings.ARTIFACTS_DIR) / dataset.file
        return finished_file(dataset, path=path, filename=f"{dataset}.parquet")


# Training runs ------------------------------------------------------------------------------------


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id", "dataset", "base_model", "max_length", "learning_rate", "epochs", "prompts_per_batch", "seed",
            "use_margin", "status", "progress_percent", "step", "total_steps", "eta_seconds", "history", "metrics",
            "error", "cancel_requested", "attempts", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = [
            "status", "progress_percent", "step", "total_steps", "eta_seconds", "history", "metrics", "error",
            "cancel_requested", "attempts", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class TrainingRunRequest(StrictModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["dataset", "base_model", "max_length", "learning_rate", "epochs", "prompts_per_batch", "seed",
                  "use_margin"]


RUN_EXAMPLE = {
    "id": 9, "dataset": 5, "base_model": "minilm", "max_length": 256, "learning_rate": 3e-5, "epochs": 2,
    "prompts_per_batch": 8, "seed": 0, "use_margin": False, "status": "running", "progress_percent": 42.0,
    "step": 126, "total_steps": 300, "eta_seconds": 95, "history": [{"step": 100, "epoch": 0, "loss": 0.61}],
    "metrics": {}, "error": "", "cancel_requested": False, "attempts": 1, "created_at": "2026-11-30T11:05:00Z",
    "started_at": "2026-11-30T11:05:02Z", "finished_at": None,
}  # fmt: skip


@extend_schema_view(
    cancel=cancel_schema("a run", TrainingRunSerializer, RUN_EXAMPLE),
    **read_schemas(
        RUN_EXAMPLE, many=("Training runs", "A page of runs"),
        one=("One training run, with its progress and learning curve", "A run"),
    ),
    create=extend_schema(
        summary="Train a reward model on a finished pair dataset",
        request=TrainingRunRequest,
        responses={201: TrainingRunSerializer, 429: throttles.throttled_response("runs")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample("MiniLM", value={"dataset": 5, "base_model": "minilm", "epochs": 2}, request_only=True),
            OpenApiExample("Queued", value=RUN_EXAMPLE | {"status": "queued", "step": 0}, response_only=True),
        ],
    ),
)
class TrainingRunViewSet(_CancelMixin, throttles.ThrottledActionsMixin, mixins.ListModelMixin,
                         mixins.RetrieveModelMixin, mixins.CreateModelMixin, _MLViewSet):  # fmt: skip
    serializer_class = TrainingRunSerializer
    throttle_scopes = {"create": "runs"}
    queryset = TrainingRun.objects.all()
    filterset_fields = ["status", "dataset"]

    def create(self, request):
        body = TrainingRunRequest(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        try:
            run = runs.request_training_run(dataset=fields.pop("dataset"), user=request.user, **fields)
        except ValueError as error:  # the dataset is not built
            raise serializers.ValidationError({"dataset": [str(error)]}) from None
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)



# Reward models ------------------------------------------------------------------------------------


class RewardModelSerializer(serializers.ModelSerializer):
    dataset = serializers.IntegerField(source="run.dataset_id", read_only=True)

    class Meta:
        model = RewardModel
        fields = ["id", "name", "run", "dataset", "metrics", "bias_offset", "is_active", "created_at"]


class ScoreRequest(StrictSerializer):
    prompt = serializers.CharField(max_length=settings.MAX_TEXT_CHARS, trim_whitespace=False)
    answers = serializers.ListField(
        child=serializers.CharField(max_length=settings.MAX_TEXT_CHARS, trim_whitespace=False, allow_blank=True),
        min_length=1,
        max_length=MAX_SCORED_ANSWERS,
    )


class ScoreResult(serializers.Serializer):
    model = serializers.IntegerField()
    rewards = serializers.ListField(child=serializers.FloatField(), help_text="One reward per answer, in order.")


MODEL_EXAMPLE = {
    "id": 4, "name": "helpful-v2-minilm", "run": 9, "dataset": 5,
    "metrics": {"validation": {"accuracy": 0.71, "ci_low": 0.67, "ci_high": 0.75}}, "bias_offset": 0.0,
    "is_active": True, "created_at": "2026-11-30T11:20:00Z",
}  # fmt: skip


@extend_schema_view(
    **read_schemas(
        MODEL_EXAMPLE, many=("Reward models", "A page of models"), one=("One reward model", "A model"),
    ),
)
class RewardModelViewSet(throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         _MLViewSet):  # fmt: skip
    serializer_class = RewardModelSerializer
    throttle_scopes = {"score": "score"}
    queryset = RewardModel.objects.select_related("run")
    filterset_fields = ["is_active", "run"]

    @extend_schema(
        summary="Make this the active reward model",
        request=None,
        responses={200: RewardModelSerializer},
        examples=[OpenApiExample("Active", value=MODEL_EXAMPLE, response_only=True)],
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        model = self.get_object()
        registry.activate_reward_model(model, user=request.user)
        model.refresh_from_db()
        return Response(RewardModelSerializer(model).data)

    @extend_schema(
        summary="Score answers to a prompt",
        description="Scored in the web process with a cached model: one forward pass of the answers, no broker "
        "round trip (bench/score_latency.py measures both ways). One request may cost at most `SCORE_MAX_TOKENS` "
        "tokens (default 8,192): the number of answers times the longest prompt + answer sequence in tokens, "
        "each capped at the model's `max_length`; past that it answers 400. At most `SCORE_CONCURRENCY` "
        "requests (default 1) score at once on each web machine; another answers 503 with `Retry-After` at "
        "once (docs/api.md).",
        request=ScoreRequest,
        responses={
            200: ScoreResult,
            409: OpenApiResponse(Detail, description="The model's files are gone."),
            429: throttles.throttled_response("score"),
            503: OpenApiResponse(Detail, description="Every scoring slot of this machine is busy; retry."),
        },
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample(
                "Two answers", value={"prompt": "Name a prime.", "answers": ["7", "9"]}, request_only=True
            ),
            OpenApiExample("Rewards", value={"model": 4, "rewards": [1.92, -0.85]}, response_only=True),
            OpenApiExample(
                "Busy",
                value={"detail": "Every scoring slot is busy (1 on this machine); retry in 2 seconds."},
                response_only=True,
                status_codes=["503"],
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def score(self, request, pk=None):
        model = self.get_object()
        body = ScoreRequest(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with slot("score", settings.SCORE_CONCURRENCY):
                return self._score(model, **body.validated_data)
        except NoFreeSlot:
            detail = (
                f"Every scoring slot is busy ({settings.SCORE_CONCURRENCY} on this machine); "
                f"retry in {SCORE_RETRY_SECONDS} seconds."
            )
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": str(SCORE_RETRY_SECONDS)})  # fmt: skip

    @staticmethod
    def _score(model: RewardModel, *, prompt: str, answers: list[str]) -> Response:
        from .ml.scoring import TooMuchToScore  # torch loads on the first score, not with the URLs

        try:
            scorer = registry.scorer_for(model.path)
        except OSError as error:  # the model's directory was moved or deleted since it was trained
            return Response({"detail": f"Reward model {model.pk} cannot be loaded: {error}"},
                            status=status.HTTP_409_CONFLICT)  # fmt: skip
        try:
            rewards = scorer.score(prompt, answers, max_tokens=settings.SCORE_MAX_TOKENS)
        except TooMuchToScore as error:
            raise serializers.ValidationError({"answers": [str(error)]}) from None
        return Response({"model": model.pk, "rewards": [float(r) for r in rewards]})


# Policies ---------------------------------------------------------------------------------------


class PolicySerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)
    made_by_sft_run = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Policy
        fields = [
            "id", "name", "version", "kind", "parent", "source", "path", "gguf_file", "data_version", "reward_model",
            "metrics", "description", "made_by_sft_run", "retired_at", "created_by", "created_at",
        ]  # fmt: skip


class PolicyRequest(StrictSerializer):
    source = serializers.CharField(max_length=500, help_text=policies.SOURCE_HELP)
    name = serializers.SlugField(max_length=100, required=False, default="", help_text="Empty: from the source.")
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)

    def validate_source(self, source: str) -> str:
        try:
            policies.check_source(source)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None
        return source.strip()


POLICY_EXAMPLE = {
    "id": 3, "name": "helpful-sft", "version": 1, "kind": "sft", "parent": 1, "source": "sft run",
    "path": "/srv/annotate/artifacts/sft/7/model", "gguf_file": "",
    "data_version": "demonstrations sha256:3f1a9c0e22b1 (412 rows, SFT run 7)", "reward_model": None,
    "metrics": {"base_perplexity": 9.8, "perplexity": 4.1}, "description": "", "made_by_sft_run": 7,
    "retired_at": None, "created_by": "mlstaff", "created_at": "2026-12-07T10:00:00Z",
}  # fmt: skip


@extend_schema_view(
    **read_schemas(
        POLICY_EXAMPLE, many=("Policies", "A page of policies"), one=("One policy, with its lineage", "A policy"),
    ),
    create=extend_schema(
        summary="Register a base policy",
        description="The bundled `smollm2` or `tiny`, a model directory in MODELS_DIR, or a Hugging Face id already in "
        "this machine's cache; nothing is downloaded. Versions count up per name.",
        request=PolicyRequest,
        responses={201: PolicySerializer},
        examples=[
            OpenApiExample("SmolLM2", value={"source": "smollm2"}, request_only=True),
            OpenApiExample(
                "Registered", value=POLICY_EXAMPLE | {"id": 1, "name": "smollm2", "kind": "base", "parent": None,
                                                      "source": "smollm2", "path": "", "data_version": "",
                                                      "metrics": {}, "made_by_sft_run": None},
                response_only=True,
            ),  # fmt: skip
        ],
    ),
)
class PolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, _MLViewSet):
    serializer_class = PolicySerializer
    queryset = Policy.objects.select_related("created_by", "made_by_sft_run")
    filterset_fields = ["kind", "name", "parent"]

    def create(self, request):
        body = PolicyRequest(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            policy = policies.register_base_policy(user=request.user, **body.validated_data)
        except ValueError as error:
            raise serializers.ValidationError({"name": [str(error)]}) from None
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Retire a policy",
        description="It stays in the registry and its lineage; no new run or generation job starts from it.",
        request=None,
        responses={200: PolicySerializer},
        examples=[
            OpenApiExample("Retired", value=POLICY_EXAMPLE | {"retired_at": "2026-12-08T09:00:00Z"}, response_only=True)
        ],
    )
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        policy = policies.retire_policy(self.get_object(), user=request.user)
        return Response(PolicySerializer(policy).data)


# SFT runs ---------------------------------------------------------------------------------------


class SFTRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SFTRun
        fields = [
            "id", "policy", "queues", "filters", "output_name", *sft_runs.HYPERPARAMETERS, "status",
            "progress_percent", "step", "total_steps", "eta_seconds", "history", "metrics", "previews", "data_sha256",
            "output", "error", "cancel_requested", "attempts", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class SFTRunRequest(StrictModelSerializer):
    policy = serializers.PrimaryKeyRelatedField(queryset=Policy.objects.all())
    queues = serializers.PrimaryKeyRelatedField(many=True, queryset=Queue.objects.all(), allow_empty=False)
    filters = serializers.DictField(
        required=False, default=dict,
        help_text="As exports take them: date_from, date_to (YYYY-MM-DD), labeler_ids, exclude_skipped, "
        "exclude_flagged, min_agreement, min_gold_accuracy.",
    )  # fmt: skip
    output_name = serializers.SlugField(
        max_length=100, required=False, default="", help_text="The new policy's name; empty: the policy's + “-sft”."
    )

    class Meta:
        model = SFTRun
        fields = ["policy", "queues", "filters", "output_name", *sft_runs.HYPERPARAMETERS]


SFT_EXAMPLE = {
    "id": 7, "policy": 1, "queues": [2], "filters": {"exclude_flagged": True}, "output_name": "helpful-sft",
    "validation_fraction": 0.1, "seed": 0, "epochs": 2, "learning_rate": 5e-5, "max_length": 512, "batch_size": 4,
    "lora": False, "status": "running", "progress_percent": 40.0, "step": 80, "total_steps": 200, "eta_seconds": 310,
    "history": [{"step": 80, "epoch": 1, "loss": 1.92}], "metrics": {}, "previews": [], "data_sha256": "3f1a9c…",
    "output": None, "error": "", "cancel_requested": False, "attempts": 1, "created_at": "2026-12-07T10:00:00Z",
    "started_at": "2026-12-07T10:00:02Z", "finished_at": None,
}  # fmt: skip


@extend_schema_view(
    cancel=cancel_schema("an SFT run", SFTRunSerializer, SFT_EXAMPLE),
    **read_schemas(
        SFT_EXAMPLE, many=("SFT runs", "A page of SFT runs"),
        one=("One SFT run: progress, base against fine-tuned figures, previews", "An SFT run"),
    ),
    create=extend_schema(
        summary="Fine-tune a policy on demonstrations",
        description="The demonstrations of the queues that pass the filters, split by prompt; TRL's SFTTrainer with "
        "the loss on the answers. A finished run registers a new `sft` policy (`output`).",
        request=SFTRunRequest,
        responses={201: SFTRunSerializer, 429: throttles.throttled_response("runs")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample("From SmolLM2", value={"policy": 1, "queues": [2], "epochs": 2}, request_only=True),
            OpenApiExample("Queued", value=SFT_EXAMPLE | {"status": "queued", "step": 0}, response_only=True),
        ],
    ),
)
class SFTRunViewSet(_CancelMixin, throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                    mixins.CreateModelMixin, _MLViewSet):  # fmt: skip
    cancel_action = "sft.cancel"
    serializer_class = SFTRunSerializer
    throttle_scopes = {"create": "runs"}
    queryset = SFTRun.objects.prefetch_related("queues")
    filterset_fields = ["status", "policy"]

    def create(self, request):
        body = SFTRunRequest(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        try:
            run = sft_runs.request_sft_run(user=request.user, **fields)
        except FilterError as error:
            raise serializers.ValidationError({"filters": [str(error)]}) from None
        except ValueError as error:  # a retired policy
            raise serializers.ValidationError({"policy": [str(error)]}) from None
        return Response(SFTRunSerializer(run).data, status=status.HTTP_201_CREATED)



# Policy runs ------------------------------------------------------------------------------------


class PolicyRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyRun
        fields = [
            "id", "method", "policy", "reference", "reward_model", "dataset", "queues", "output_name",
            *policy_runs.HYPERPARAMETERS, "status", "progress_percent", "step", "total_steps", "eta_seconds",
            "history", "metrics", "output", "error", "cancel_requested", "attempts", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip


class PolicyRunRequest(StrictModelSerializer):
    output_name = serializers.SlugField(
        max_length=100, required=False, default="", help_text="The new policy's name; empty: the policy's + the method."
    )
    queues = serializers.PrimaryKeyRelatedField(many=True, queryset=Queue.objects.all(), required=False, default=list)

    class Meta:
        model = PolicyRun
        fields = ["method", "policy", "reference", "reward_model", "dataset", "queues", "output_name",
                  *policy_runs.HYPERPARAMETERS]  # fmt: skip


POLICY_RUN_EXAMPLE = {
    "id": 4, "method": "rl", "policy": 3, "reference": None, "reward_model": 2, "dataset": None, "queues": [5],
    "output_name": "helpful-rl", "algorithm": "rloo", "beta": 0.05, "samples_per_prompt": 4, "learning_rate": 1e-6,
    "epochs": 1, "max_new_tokens": 128, "temperature": 1.0, "evaluation_fraction": 0.2, "seed": 0,
    "status": "succeeded", "progress_percent": 100.0, "step": 120, "total_steps": 120, "eta_seconds": 0,
    "history": [{"step": 120, "epoch": 1, "reward": 0.84, "kl": 0.9, "loss": 0.02}],
    "metrics": {"steps": 120, "evaluation": {"prompts": 32, "samples_per_prompt": 2, "mean_reward": 0.81,
                                             "parent_mean_reward": 0.12, "kl_to_reference": 3.4,
                                             "predicted_win_rate": 0.69}},
    "output": 6, "error": "", "cancel_requested": False, "attempts": 1, "created_at": "2026-12-07T12:00:00Z",
    "started_at": "2026-12-07T12:00:02Z", "finished_at": "2026-12-07T12:40:00Z",
}  # fmt: skip


@extend_schema_view(
    cancel=cancel_schema("a policy run", PolicyRunSerializer, POLICY_RUN_EXAMPLE),
    **read_schemas(
        POLICY_RUN_EXAMPLE, many=("Policy runs", "A page of policy runs"),
        one=("One policy run: progress, per-step reward and KL, the held-out evaluation", "A policy run"),
    ),
    create=extend_schema(
        summary="Optimise a policy",
        description="`rejection-sampling` or `rl` against a reward model (the active one unless given) on the prompts "
        "of `queues`; `dpo` on a finished pair `dataset`. A finished run registers the new policy (`output`).",
        request=PolicyRunRequest,
        responses={201: PolicyRunSerializer, 429: throttles.throttled_response("runs")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample("RLOO", value={"method": "rl", "policy": 3, "queues": [5], "algorithm": "rloo",
                                          "beta": 0.05}, request_only=True),  # fmt: skip
            OpenApiExample("DPO", value={"method": "dpo", "policy": 3, "dataset": 2, "beta": 0.1}, request_only=True),
            OpenApiExample("Queued", value=POLICY_RUN_EXAMPLE | {"status": "queued", "step": 0, "metrics": {},
                                                                 "output": None}, response_only=True),  # fmt: skip
        ],
    ),
)
class PolicyRunViewSet(_CancelMixin, throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       mixins.CreateModelMixin, _MLViewSet):  # fmt: skip
    cancel_action = "policy_run.cancel"
    serializer_class = PolicyRunSerializer
    throttle_scopes = {"create": "runs"}
    queryset = PolicyRun.objects.prefetch_related("queues")
    filterset_fields = ["status", "method", "policy"]

    def create(self, request):
        body = PolicyRunRequest(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = policy_runs.request_policy_run(user=request.user, **body.validated_data)
        except ValueError as error:
            raise serializers.ValidationError({"detail": [str(error)]}) from None
        return Response(PolicyRunSerializer(run).data, status=status.HTTP_201_CREATED)



# Evaluation rounds ------------------------------------------------------------------------------


class PolicyFiguresSerializer(serializers.Serializer):
    policy = serializers.IntegerField()
    name = serializers.CharField()
    win_rate = serializers.FloatField(allow_null=True, help_text="The labelers': share of (this policy's answer, "
                                      "baseline answer) pairs ranked in the policy's favour, ties half.")
    low = serializers.FloatField(allow_null=True, help_text="95% prompt-bootstrap interval, lower end.")
    high = serializers.FloatField(allow_null=True, help_text="95% prompt-bootstrap interval, upper end.")
    prompts = serializers.IntegerField(help_text="Prompts with a ranking of both policies' answers.")
    comparisons = serializers.IntegerField(help_text="Answer pairs counted, over every ranking.")
    predicted_win_rate = serializers.FloatField(allow_null=True, help_text="The reward model's, from the rewards.")
    reward_model_accuracy = serializers.FloatField(
        allow_null=True, help_text="Share of the labelers' orderings of these two policies' answers it agrees with."
    )


class RoundFiguresSerializer(serializers.Serializer):
    prompts = serializers.IntegerField(help_text="Prompts written with every policy's answers.")
    tasks = serializers.IntegerField()
    rankings = serializers.IntegerField(help_text="Submitted so far.")
    rankings_wanted = serializers.IntegerField(help_text="The ranking tasks' overlaps added up.")
    reward_model_accuracy = serializers.FloatField(allow_null=True, help_text="On every pair the labelers ordered.")
    policies = PolicyFiguresSerializer(many=True, help_text="Every policy but the baseline.")


class EvaluationRoundSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = EvaluationRound
        fields = [
            "id", "name", "queue", "baseline", "policies", "answers_per_policy", "reward_model", *evaluation.SAMPLING,
            "status", "prompts_total", "prompts_done", "errors", "error", "attempts", "created_by", "created_at",
            "started_at", "finished_at",
        ]  # fmt: skip


class EvaluationRoundDetailSerializer(EvaluationRoundSerializer):
    figures = serializers.SerializerMethodField()

    class Meta(EvaluationRoundSerializer.Meta):
        fields = [*EvaluationRoundSerializer.Meta.fields, "figures"]

    @extend_schema_field(RoundFiguresSerializer)
    def get_figures(self, round_: EvaluationRound) -> dict:
        return evaluation_selectors.figures_as_dict(evaluation_selectors.round_figures(round_))


class EvaluationRoundRequest(StrictModelSerializer):
    reward_model = serializers.PrimaryKeyRelatedField(
        queryset=RewardModel.objects.all(), allow_null=True, required=False,
        help_text="Left out: the active reward model; null: none (no predicted win rate).",
    )  # fmt: skip

    class Meta:
        model = EvaluationRound
        fields = ["name", "queue", "baseline", "policies", "answers_per_policy", "reward_model", *evaluation.SAMPLING]


ROUND_EXAMPLE = {
    "id": 4, "name": "sft-v2 against base", "queue": 9, "baseline": 1, "policies": [3], "answers_per_policy": 2,
    "reward_model": 4, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256, "seed": 0, "status": "succeeded",
    "prompts_total": 400, "prompts_done": 400, "errors": [], "error": "", "attempts": 1, "created_by": "mlstaff",
    "created_at": "2026-12-10T09:00:00Z", "started_at": "2026-12-10T09:00:02Z", "finished_at": "2026-12-10T09:31:40Z",
}  # fmt: skip
FIGURES_EXAMPLE = {
    "prompts": 200, "tasks": 200, "rankings": 540, "rankings_wanted": 600, "reward_model_accuracy": 0.68,
    "policies": [{
        "policy": 3, "name": "helpful-sft-v2", "win_rate": 0.64, "low": 0.55, "high": 0.72, "prompts": 180,
        "comparisons": 2160, "predicted_win_rate": 0.71, "reward_model_accuracy": 0.69,
    }],
}  # fmt: skip


@extend_schema_view(
    list=extend_schema(
        summary="Evaluation rounds",
        examples=[OpenApiExample("A page of rounds", value=ROUND_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        summary="One evaluation round, with its figures",
        description="`figures`: per policy, the labelers' win rate against the baseline with its 95% prompt-bootstrap "
        "interval, and the reward model's predicted win rate and accuracy on the round's rankings (docs/loop.md).",
        examples=[OpenApiExample("A round", value=ROUND_EXAMPLE | {"figures": FIGURES_EXAMPLE}, response_only=True)],
    ),
    create=extend_schema(
        summary="Compare policies blind, ranked by labelers",
        description="Every policy samples `answers_per_policy` answers to each prompt of `queue` (a fresh ranking "
        "queue: no answers, no policy trained on it), on the generation queue; the prompts become ranking tasks whose "
        "answers labelers see shuffled, with no hint of their source. Policies × answers: 2 to 9.",
        request=EvaluationRoundRequest,
        responses={201: EvaluationRoundSerializer, 429: throttles.throttled_response("generation")},
        parameters=[throttles.RETRY_AFTER],
        examples=[
            OpenApiExample(
                "SFT against base",
                value={"name": "sft-v2 against base", "queue": 9, "baseline": 1, "policies": [3],
                       "answers_per_policy": 2},
                request_only=True,
            ),  # fmt: skip
            OpenApiExample("Queued", value=ROUND_EXAMPLE | {"status": "queued", "prompts_done": 0}, response_only=True),
        ],
    ),
)
class EvaluationRoundViewSet(throttles.ThrottledActionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             mixins.CreateModelMixin, _MLViewSet):  # fmt: skip
    serializer_class = EvaluationRoundSerializer
    throttle_scopes = {"create": "generation"}
    queryset = EvaluationRound.objects.select_related("created_by").prefetch_related("policies")
    filterset_fields = ["status", "queue", "baseline"]

    def get_serializer_class(self):
        return EvaluationRoundDetailSerializer if self.action == "retrieve" else EvaluationRoundSerializer

    def create(self, request):
        body = EvaluationRoundRequest(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        if "reward_model" not in fields:
            fields["reward_model"] = RewardModel.objects.filter(is_active=True).first()
        try:
            round_ = evaluation.request_evaluation_round(user=request.user, **fields)
        except ValueError as error:  # the service names what is wrong
            raise serializers.ValidationError({"non_field_errors": [str(error)]}) from None
        return Response(EvaluationRoundSerializer(round_).data, status=status.HTTP_201_CREATED)

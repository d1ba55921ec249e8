"""/api/v1/ (one router for every app's endpoints), the OpenAPI schema and its documentation page. The page
where ML staff make the tokens the API takes is core's (core.urls)."""
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from labeling.api import DemonstrationViewSet, PromptViewSet, QueueViewSet, RankingViewSet
from labeling.datasets.views import ExportSnapshotViewSet
from rewardtrain.api import (
    EvaluationRoundViewSet,
    PairDatasetViewSet,
    PolicyRunViewSet,
    PolicyViewSet,
    RewardModelViewSet,
    SFTRunViewSet,
    TrainingRunViewSet,
)

# Swagger UI in our page, whose start-up script carries the CSP nonce (templates/api_docs.html); its icons are
# data: images, allowed on this page alone.
api_docs = csp_update({"img-src": ["data:"]})(
    SpectacularSwaggerView.as_view(url_name="api-schema", template_name="api_docs.html")
)

router = DefaultRouter()
# basename "api-…": URL names such as api-queue-list stay apart from the pages' names.
router.register("queues", QueueViewSet, basename="api-queue")
router.register("prompts", PromptViewSet, basename="api-prompt")
router.register("demonstrations", DemonstrationViewSet, basename="api-demonstration")
router.register("rankings", RankingViewSet, basename="api-ranking")
router.register("pair-datasets", PairDatasetViewSet, basename="api-pair-dataset")
router.register("runs", TrainingRunViewSet, basename="api-run")
router.register("reward-models", RewardModelViewSet, basename="api-reward-model")
router.register("exports", ExportSnapshotViewSet, basename="api-export")
router.register("policies", PolicyViewSet, basename="api-policy")
router.register("sft-runs", SFTRunViewSet, basename="api-sft-run")
router.register("policy-runs", PolicyRunViewSet, basename="api-policy-run")
router.register("evaluation-rounds", EvaluationRoundViewSet, basename="api-evaluation-round")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
]

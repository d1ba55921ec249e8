"""REST endpoints of rewardtrain (under /api/v1/)."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.roles import ML, has_role

from .models import RewardModel

MAX_SCORED_ANSWERS = 64


class HasMLRole(permissions.BasePermission):
    message = "This endpoint needs the ml role."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, ML)


class ScoreRequest(serializers.Serializer):
    prompt = serializers.CharField(max_length=settings.MAX_TEXT_CHARS, trim_whitespace=False)
    answers = serializers.ListField(
        child=serializers.CharField(max_length=settings.MAX_TEXT_CHARS, trim_whitespace=False, allow_blank=True),
        min_length=1,
        max_length=MAX_SCORED_ANSWERS,
    )


class ScoreView(APIView):
    """POST {"prompt": ..., "answers": [...]} → {"rewards": [one float per answer]}.

    Scored in this process with a cached model: one forward pass of the K answers, no broker round
    trip (bench/score_latency.py measures both ways).
    """

    permission_classes = [permissions.IsAuthenticated, HasMLRole]

    def post(self, request, model_id: int):
        from .scoring import load_scorer

        model = get_object_or_404(RewardModel, pk=model_id)
        body = ScoreRequest(data=request.data)
        body.is_valid(raise_exception=True)
        rewards = load_scorer(model.path).score(body.validated_data["prompt"], body.validated_data["answers"])
        return Response({"model": model.pk, "rewards": [float(r) for r in rewards]})

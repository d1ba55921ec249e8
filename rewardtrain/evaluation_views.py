"""Pages for ML staff: start an evaluation round (policies compared blind by labelers) and read its figures."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from core import throttles
from core.roles import ML, role_required
from labeling.models import Prompt

from . import evaluation, evaluation_selectors
from .forms import EvaluationRoundForm
from .models import EvaluationRound


@role_required(ML)
def evaluation_list(request):
    def start(form):
        data = dict(form.cleaned_data)
        round_ = evaluation.request_evaluation_round(
            name=data.pop("name"), queue=data.pop("queue"), baseline=data.pop("baseline"),
            policies=list(data.pop("policies")), user=request.user, **data,
        )  # fmt: skip
        messages.success(request, f"Evaluation round {round_.pk} is queued for a generation worker.")
        return redirect("ml-evaluation-round", round_.pk)

    rounds = EvaluationRound.objects.select_related("queue", "baseline", "created_by").prefetch_related("policies")
    return throttles.request_page(
        request, EvaluationRoundForm(request.POST or None), scope="generation",
        template="rewardtrain/evaluation_list.html", context=lambda: {"rounds": rounds}, start=start,
    )  # fmt: skip


@role_required(ML)
def evaluation_detail(request, round_id: int):
    round_ = get_object_or_404(
        EvaluationRound.objects.select_related("queue", "baseline", "reward_model", "created_by"), pk=round_id
    )
    names = {policy.pk: policy for policy in evaluation.compared_policies(round_)}
    texts = dict(Prompt.objects.filter(pk__in=[e["prompt_id"] for e in round_.errors]).values_list("pk", "text"))
    errors = [
        entry | {"prompt": texts.get(entry["prompt_id"], ""), "policy_name": names.get(entry.get("policy"), "")}
        for entry in round_.errors
    ]
    percent = 100.0 * round_.prompts_done / round_.prompts_total if round_.prompts_total else 0.0
    context = {
        "round": round_,
        "others": list(names.values())[1:],
        "errors": errors,
        "percent": percent,
        "figures": evaluation_selectors.round_figures(round_),
        "samples": evaluation_selectors.sample_answers(round_),
    }
    return render(request, "rewardtrain/evaluation_detail.html", context)

"""Pages for ML staff: the policy registry (register, inspect, retire), SFT runs and policy runs (start, follow,
cancel)."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core import throttles
from core.roles import ML, role_required

from . import policies, policy_runs, sft_runs
from .forms import PolicyForm, PolicyRunForm, SFTRunForm
from .models import Policy, PolicyRun, SFTRun
from .views import cancel_page, progress_json


@role_required(ML)
def policy_list(request):
    form = PolicyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            policy = policies.register_base_policy(
                source=data["source"], name=data["name"], description=data["description"], user=request.user
            )
        except ValueError as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, f"{policy} is registered.")
            return redirect("ml-policy", policy.pk)
    listed = Policy.objects.select_related("parent", "reward_model", "created_by")
    return render(request, "rewardtrain/policy_list.html", {"policies": listed, "form": form})


@role_required(ML)
def policy_detail(request, policy_id: int):
    policy = get_object_or_404(Policy.objects.select_related("parent", "reward_model", "created_by"), pk=policy_id)
    context = {
        "policy": policy,
        "lineage": policies.lineage(policy)[1:],
        "children": policy.children.all(),
        "made_by_sft": getattr(policy, "made_by_sft_run", None),
        "made_by_run": getattr(policy, "made_by_policy_run", None),
        "policy_runs": policy.policy_runs.all(),
        "sft_runs": policy.sft_runs.all(),
        "generation_jobs": policy.generation_jobs.select_related("queue")[:20],
        "problem": policies.problem(policy),
    }
    return render(request, "rewardtrain/policy_detail.html", context)


@require_POST
@role_required(ML)
def policy_retire(request, policy_id: int):
    policy = policies.retire_policy(get_object_or_404(Policy, pk=policy_id), user=request.user)
    messages.info(request, f"{policy} is retired: no new run or generation job starts from it.")
    return redirect("ml-policy", policy.pk)


def _starting_policy(request) -> dict | None:
    """A run form's policy, when a policy's page linked to it (?policy=<id>)."""
    given = request.GET.get("policy", "")
    return {"policy": given} if given.isdigit() else None


@role_required(ML)
def sft_list(request):
    def start(form):
        run = sft_runs.request_sft_run(
            policy=form.cleaned_data["policy"], queues=list(form.cleaned_data["queues"]), filters=form.filters(),
            output_name=form.cleaned_data["name"], user=request.user, **form.hyperparameters(),
        )  # fmt: skip
        messages.success(request, f"SFT run {run.pk} is queued for a training worker.")
        return redirect("ml-sft-run", run.pk)

    return throttles.request_page(
        request, SFTRunForm(request.POST or None, initial=_starting_policy(request)), scope="runs",
        template="rewardtrain/sft_list.html",
        context=lambda: {"runs": SFTRun.objects.select_related("policy", "output", "created_by")}, start=start,
    )  # fmt: skip


@role_required(ML)
def sft_detail(request, run_id: int):
    run = get_object_or_404(SFTRun.objects.select_related("policy", "output").prefetch_related("queues"), pk=run_id)
    return render(request, "rewardtrain/sft_detail.html", {"run": run})


@role_required(ML)
def sft_progress(request, run_id: int):
    return progress_json(get_object_or_404(SFTRun, pk=run_id))


@require_POST
@role_required(ML)
def sft_cancel(request, run_id: int):
    return cancel_page(request, get_object_or_404(SFTRun, pk=run_id), action="sft.cancel", page="ml-sft-run")


@role_required(ML)
def policy_run_list(request):
    def start(form):
        data = dict(form.cleaned_data)  # the form's fields are the service's arguments
        run = policy_runs.request_policy_run(queues=list(data.pop("queues")), user=request.user, **data)
        messages.success(request, f"Policy run {run.pk} is queued for a training worker.")
        return redirect("ml-policy-run", run.pk)

    return throttles.request_page(
        request, PolicyRunForm(request.POST or None, initial=_starting_policy(request)), scope="runs",
        template="rewardtrain/policy_run_list.html",
        context=lambda: {"runs": PolicyRun.objects.select_related("policy", "output", "reward_model", "created_by")},
        start=start,
    )  # fmt: skip


@role_required(ML)
def policy_run_detail(request, run_id: int):
    run = get_object_or_404(
        PolicyRun.objects.select_related("policy", "output", "reward_model", "dataset", "reference"), pk=run_id
    )
    return render(request, "rewardtrain/policy_run_detail.html", {"run": run})


@role_required(ML)
def policy_run_progress(request, run_id: int):
    return progress_json(get_object_or_404(PolicyRun, pk=run_id))


@require_POST
@role_required(ML)
def policy_run_cancel(request, run_id: int):
    run = get_object_or_404(PolicyRun, pk=run_id)
    return cancel_page(request, run, action="policy_run.cancel", page="ml-policy-run")

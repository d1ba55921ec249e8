"""Pages for ML staff: pair datasets, training runs (with their learning curve) and the model registry."""
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core import throttles
from core.roles import ML, role_required

from . import datasets, registry, runs
from .forms import PairDatasetForm, TrainingRunForm
from .models import PairDataset, RewardModel, TrainingJob, TrainingRun


@role_required(ML)
def dataset_list(request):
    def start(form):
        data = form.cleaned_data
        dataset = datasets.request_pair_dataset(
            name=data["name"],
            queues=list(data["queues"]),
            filters=form.filters(),
            validation_fraction=data["validation_fraction"],
            seed=data["seed"],
            user=request.user,
        )
        messages.success(request, f"Building {dataset}; the worker is on it.")
        return redirect("ml-dataset", dataset.pk)

    return throttles.request_page(
        request, PairDatasetForm(request.POST or None), scope="datasets", template="rewardtrain/dataset_list.html",
        context=lambda: {"datasets": PairDataset.objects.prefetch_related("queues").select_related("created_by")},
        start=start,
    )  # fmt: skip


@role_required(ML)
def dataset_detail(request, dataset_id: int):
    dataset = get_object_or_404(PairDataset.objects.prefetch_related("queues"), pk=dataset_id)
    left_out = dataset.build_notes.get("left_out_labelers", [])
    names = dict(User.objects.filter(pk__in=[row["labeler_id"] for row in left_out]).values_list("pk", "username"))
    queues = {queue.pk: queue.name for queue in dataset.queues.all()}
    left_out = [
        row | {"username": names.get(row["labeler_id"], f"#{row['labeler_id']}"), "queue": queues.get(row["queue_id"])}
        for row in left_out
    ]
    return render(
        request,
        "rewardtrain/dataset_detail.html",
        {
            "dataset": dataset,
            "left_out": left_out,
            "run_form": TrainingRunForm(initial={"dataset": dataset.pk}),
            "runs": dataset.runs.all(),
        },
    )


@role_required(ML)
def run_list(request):
    def start(form):
        fields = {name: value for name, value in form.cleaned_data.items() if name != "dataset"}
        run = runs.request_training_run(dataset=form.cleaned_data["dataset"], user=request.user, **fields)
        messages.success(request, f"Run {run.pk} is queued for a training worker.")
        return redirect("ml-run", run.pk)

    return throttles.request_page(
        request, TrainingRunForm(request.POST or None), scope="runs", template="rewardtrain/run_list.html",
        context=lambda: {"runs": TrainingRun.objects.select_related("dataset", "created_by")}, start=start,
    )  # fmt: skip


@role_required(ML)
def run_detail(request, run_id: int):
    run = get_object_or_404(TrainingRun.objects.select_related("dataset"), pk=run_id)
    return render(request, "rewardtrain/run_detail.html", {"run": run})


def progress_json(run: TrainingJob) -> JsonResponse:
    """What a training job's page polls while it runs (static/js/run.js)."""
    return JsonResponse(
        {
            "status": run.status,
            "progress_percent": run.progress_percent,
            "step": run.step,
            "total_steps": run.total_steps,
            "eta_seconds": run.eta_seconds,
            "history": run.history,
            "error": run.error,
            "finished": run.is_finished,
        }
    )


def cancel_page(request, run: TrainingJob, *, action: str, page: str):
    """A Cancel button's POST for any training job: stop it (rewardtrain.runs.cancel_run), back to its page."""
    runs.cancel_run(run, user=request.user, action=action)
    kind = run._meta.verbose_name
    messages.info(request, f"{kind[:1].upper()}{kind[1:]} {run.pk} will stop.")
    return redirect(page, run.pk)


@role_required(ML)
def run_progress(request, run_id: int):
    return progress_json(get_object_or_404(TrainingRun, pk=run_id))


@require_POST
@role_required(ML)
def run_cancel(request, run_id: int):
    return cancel_page(request, get_object_or_404(TrainingRun, pk=run_id), action="run.cancel", page="ml-run")


@role_required(ML)
def model_list(request):
    models = RewardModel.objects.select_related("run__dataset")
    return render(request, "rewardtrain/model_list.html", {"models": models})


@require_POST
@role_required(ML)
def model_activate(request, model_id: int):
    model = get_object_or_404(RewardModel, pk=model_id)
    registry.activate_reward_model(model, user=request.user)
    messages.success(request, f"{model.name} is now the active reward model.")
    return redirect("ml-models")

"""Pages for ML staff: sample answers to a queue's prompts with a language model, and follow the job."""
from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render

from core import throttles
from core.roles import ML, role_required
from labeling.models import Prompt

from . import generation
from .forms import GenerationJobForm
from .models import GenerationJob


@role_required(ML)
def generation_list(request):
    def start(form):
        job = generation.request_generation_job(user=request.user, **form.cleaned_data)
        messages.success(request, f"Generation job {job.pk} is queued for a generation worker.")
        return redirect("ml-generation-job", job.pk)

    return throttles.request_page(
        request, GenerationJobForm(request.POST or None), scope="generation",
        template="rewardtrain/generation_list.html",
        context=lambda: {"jobs": GenerationJob.objects.select_related("queue", "created_by")}, start=start,
    )  # fmt: skip


@role_required(ML)
def generation_detail(request, job_id: int):
    job = get_object_or_404(GenerationJob.objects.select_related("queue", "created_by"), pk=job_id)
    texts = dict(Prompt.objects.filter(pk__in=[e["prompt_id"] for e in job.errors]).values_list("pk", "text"))
    errors = [entry | {"prompt": texts.get(entry["prompt_id"], "")} for entry in job.errors]
    answered = job.queue.prompts.aggregate(
        n=Count("pk", filter=Q(answers__meta__generation_job=job.pk), distinct=True)
    )["n"]
    return render(request, "rewardtrain/generation_detail.html", {"job": job, "errors": errors, "answered": answered})

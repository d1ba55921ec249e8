"""Queue management pages for the admin role: queues, their settings, and prompt imports."""
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotate.celery import delay_on_commit

from .forms import ImportForm, QueueForm
from .models import ImportJob, Queue
from .queues import save_queue
from .roles import ADMIN, role_required
from .selectors import LOW_AGREEMENT_GAP, queue_agreement_page, queue_progress
from .tasks import run_import_job


@role_required(ADMIN)
def queue_list(request):
    now = timezone.now()
    rows = [(queue, queue_progress(queue=queue, now=now)) for queue in Queue.objects.all()]
    return render(request, "labeling/manage/queue_list.html", {"rows": rows})


@role_required(ADMIN)
def queue_edit(request, queue_id: int | None = None):
    queue = get_object_or_404(Queue, pk=queue_id) if queue_id is not None else None
    form = QueueForm(request.POST or None, instance=queue)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            queue = form.save()
            created = save_queue(queue, user=request.user)
        messages.success(request, f"Saved queue “{queue.name}” ({created} new tasks).")
        return redirect("manage-queue", queue.pk)
    return render(request, "labeling/manage/queue_form.html", {"form": form, "queue": queue})


@role_required(ADMIN)
def queue_detail(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    return render(
        request,
        "labeling/manage/queue_detail.html",
        {
            "queue": queue,
            "progress": queue_progress(queue=queue, now=timezone.now()),
            "prompt_count": queue.prompts.count(),
            "import_form": ImportForm(max_bytes=settings.MAX_IMPORT_BYTES),
            "import_jobs": queue.import_jobs.select_related("uploaded_by")[:10],
        },
    )


@require_POST
@role_required(ADMIN)
def queue_toggle(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    queue.is_open = not queue.is_open
    queue.save(update_fields=["is_open", "updated_at"])
    messages.success(request, f"Queue “{queue.name}” is now {'open' if queue.is_open else 'paused'}.")
    return redirect("manage-queue", queue.pk)


@require_POST
@role_required(ADMIN)
def queue_import(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    form = ImportForm(request.POST, request.FILES, max_bytes=settings.MAX_IMPORT_BYTES)
    if not form.is_valid():
        for error in form.errors.get("file", []):
            messages.error(request, error)
        return redirect("manage-queue", queue.pk)
    upload = form.cleaned_data["file"]
    with transaction.atomic():
        job = ImportJob.objects.create(queue=queue, file=upload, original_name=upload.name, uploaded_by=request.user)
        # The worker imports; dispatch only once the job row is committed and visible to it.
        delay_on_commit(run_import_job, job.pk, on_failure=lambda reason: _import_not_sent(job.pk, reason))
    return redirect("manage-import", job.pk)


def _import_not_sent(job_id: int, reason: str) -> None:
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportJob.Status.FAILED, errors=[{"line": 0, "reason": reason}], finished_at=timezone.now()
    )


@role_required(ADMIN)
def import_detail(request, job_id: int):
    job = get_object_or_404(ImportJob.objects.select_related("queue", "uploaded_by"), pk=job_id)
    return render(request, "labeling/manage/import_detail.html", {"job": job})


@role_required(ADMIN)
def queue_agreement(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    return render(
        request,
        "labeling/manage/queue_agreement.html",
        {"queue": queue, "page": queue_agreement_page(queue=queue), "low_gap": LOW_AGREEMENT_GAP},
    )

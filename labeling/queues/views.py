"""Queue management pages for the admin role: queues, their settings, and prompt imports."""
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.roles import ADMIN, role_required

from ..models import ImportJob, Queue
from .forms import ImportForm, QueueForm
from .importing import request_import
from .selectors import queue_dashboard, queue_progress
from .services import queue_settings, save_queue, set_queue_open


@role_required(ADMIN)
def queue_list(request):
    dashboard = queue_dashboard(now=timezone.now())
    chart = {
        "days": [day.isoformat() for day in dashboard.days],
        "queues": {str(summary.queue.pk): summary.labels_per_day for summary in dashboard.queues},
    }
    return render(request, "labeling/queues/queue_list.html", {"dashboard": dashboard, "chart": chart})


@role_required(ADMIN)
def queue_edit(request, queue_id: int | None = None):
    queue = get_object_or_404(Queue, pk=queue_id) if queue_id is not None else None
    # Taken before the form writes to the queue, for the audit log's old values.
    before = queue_settings(queue) if queue is not None and request.method == "POST" else None
    form = QueueForm(request.POST or None, instance=queue)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            queue = form.save()
            created = save_queue(queue, user=request.user, before=before)
        messages.success(request, f"Saved queue “{queue.name}” ({created} new tasks).")
        return redirect("manage-queue", queue.pk)
    return render(request, "labeling/queues/queue_form.html", {"form": form, "queue": queue})


@role_required(ADMIN)
def queue_detail(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    return render(
        request,
        "labeling/queues/queue_detail.html",
        {
            "queue": queue,
            "progress": queue_progress(queue=queue, now=timezone.now()),
            "prompt_count": queue.prompts.count(),
            "import_form": ImportForm(max_bytes=settings.MAX_IMPORT_BYTES),
            "import_jobs": queue.import_jobs.select_related("uploaded_by")[:10],
            "instruction_versions": queue.instruction_versions.select_related("created_by"),
        },
    )


@require_POST
@role_required(ADMIN)
def queue_toggle(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    set_queue_open(queue, is_open=not queue.is_open, user=request.user)
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
    job = request_import(queue=queue, upload=form.cleaned_data["file"], user=request.user)
    return redirect("manage-import", job.pk)


@role_required(ADMIN)
def import_detail(request, job_id: int):
    job = get_object_or_404(ImportJob.objects.select_related("queue", "uploaded_by"), pk=job_id)
    return render(request, "labeling/queues/import_detail.html", {"job": job})

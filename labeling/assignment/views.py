"""The labeler's pages: their queues, the next task, the two task pages, submit and skip.

Rules live in labeling.assignment.services; these views translate HTTP to those calls and back.
"""
from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from core import jsonlimits
from core.roles import ADMIN, LABELER, ML, has_role, role_required
from core.text import markdown_to_html, normalize_newlines, render_markdown, render_markdown_many, without_nul

from ..models import Assignment, Flag, SkipReason, TaskKind
from . import services as service
from .selectors import labeler_queues


def home(request):
    if not request.user.is_authenticated:
        return redirect("login")
    if not has_role(request.user, LABELER):
        if has_role(request.user, ADMIN):
            return redirect("manage-queues")
        if has_role(request.user, ML):
            return redirect("ml-datasets")
    queues = labeler_queues(labeler=request.user) if has_role(request.user, LABELER) else []
    return render(request, "labeling/assignment/home.html", {"labeler_queues": queues})


def _next_url(queue_id: int | None, kind: str | None) -> str:
    if queue_id is None:
        return reverse("next-task")
    url = reverse("queue-next-task", args=[queue_id])
    return f"{url}?kind={kind}" if kind else url


@role_required(LABELER)
def next_task(request, queue_id: int | None = None):
    queue = None
    if queue_id is not None:
        # A queue that is paused, or restricted to other labelers, answers exactly like an id that does not
        # exist: its name is not this labeler's to learn. The page helps one whose queue was just paused.
        queue = service.queues_open_to(request.user).filter(pk=queue_id).first()
        if queue is None:
            return render(request, "labeling/assignment/no_task.html", {"queue": None, "not_open": True}, status=404)
    kind = request.GET.get("kind") or None
    if kind is not None and kind not in TaskKind.values:
        return HttpResponseBadRequest("Unknown task kind.")
    leased = service.lease_next_task(labeler=request.user, queue=queue, kind=kind)
    if leased is None:
        return render(request, "labeling/assignment/no_task.html", {"queue": queue, "kind": kind})
    return redirect("task", leased.pk)


def _to_next_task(request, assignment: Assignment):
    """After a submit or skip: straight to the labeler's next task of the same queue and kind, leased here, which
    saves the browser a request through `next` per task; to `next` when there is none, whose page says why."""
    task_ = assignment.task
    leased = service.lease_next_task(labeler=request.user, queue=task_.prompt.queue, kind=task_.kind)
    return redirect("task", leased.pk) if leased is not None else redirect(_next_url(task_.prompt.queue_id, task_.kind))


def _own_assignment(request, assignment_id: int) -> Assignment:
    # Another labeler's assignment id answers 404, exactly like an id that does not exist.
    return get_object_or_404(
        Assignment.objects.select_related("task__prompt__queue"), pk=assignment_id, labeler=request.user
    )


def _render_task(request, assignment: Assignment, *, error: str | None = None, form=None, status: int = 200):
    task = assignment.task
    prompt = task.prompt
    context = {
        "assignment": assignment,
        "task": task,
        "prompt": prompt,
        "queue": prompt.queue,
        "skip_reasons": SkipReason.choices,
        "error": error,
        "lease_expires_at": assignment.lease_expires_at,
        "time_spent_ms_initial": _int_or_none((form or {}).get("time_spent_ms")) or 0,
        "max_text_chars": settings.MAX_TEXT_CHARS,
        "next_url": _next_url(prompt.queue_id, task.kind),
    }
    if task.kind == TaskKind.DEMONSTRATION:
        context["prompt_html"] = mark_safe(render_markdown(prompt.text))  # noqa: S308 - sanitised
        context["initial_text"] = (form or {}).get("text", "")
        return render(request, "labeling/assignment/demonstrate.html", context, status=status)
    answers = {answer.pk: answer for answer in prompt.answers.all()}
    ordered = [answers.pop(pk) for pk in assignment.answer_order if pk in answers] + list(answers.values())
    # The prompt's and the answers' HTML from the cache in one round trip. render_markdown escapes raw HTML and
    # sanitises what it makes, so marking it safe is sound.
    prompt_html, *answer_html = render_markdown_many([prompt.text, *(a.text for a in ordered)])
    for number, (answer, html) in enumerate(zip(ordered, answer_html, strict=True), start=1):
        answer.number, answer.html = number, mark_safe(html)  # noqa: S308
    context.update(
        prompt_html=mark_safe(prompt_html),  # noqa: S308
        answers=ordered,
        flags=Flag.choices,
        initial_groups=(form or {}).get("groups", ""),
        initial_ratings=_ratings_from_form(form or {}, [a.pk for a in ordered]),
        initial_flags=_flags_from_form(form or {}, [a.pk for a in ordered]),
    )
    return render(request, "labeling/assignment/rank.html", context, status=status)


@role_required(LABELER)
def task(request, assignment_id: int):
    assignment = _own_assignment(request, assignment_id)
    if assignment.status != Assignment.Status.LEASED:
        messages.info(request, f"You have already {assignment.status} that task.")
        return redirect(_next_url(assignment.task.prompt.queue_id, assignment.task.kind))
    return _render_task(request, assignment)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ratings_from_form(form, answer_ids: list[int]) -> dict[int, str]:
    """`rating-<answer id>` radio values, for the answers that have one."""
    return {pk: form.get(f"rating-{pk}") for pk in answer_ids if form.get(f"rating-{pk}")}


def _flags_from_form(form, answer_ids: list[int]) -> dict[int, list[str]]:
    """`flag-<answer id>` checkbox values, for the answers that have any."""
    getlist = getattr(form, "getlist", lambda key: [])
    return {pk: getlist(f"flag-{pk}") for pk in answer_ids if getlist(f"flag-{pk}")}


@require_POST
@role_required(LABELER)
def task_submit(request, assignment_id: int):
    assignment = _own_assignment(request, assignment_id)
    task_ = assignment.task
    time_spent_ms = _int_or_none(request.POST.get("time_spent_ms"))
    try:
        if task_.kind == TaskKind.DEMONSTRATION:
            result = service.submit_demonstration(
                assignment_id=assignment.pk,
                labeler=request.user,
                text=request.POST.get("text", ""),
                time_spent_ms=time_spent_ms,
            )
        else:
            try:
                groups = jsonlimits.loads(request.POST.get("groups") or "[]")
            except jsonlimits.JSONInputError:
                raise service.InvalidLabel("The ranking could not be read; please rank the answers again.") from None
            answer_ids = [int(pk) for pk in assignment.answer_order]
            result = service.submit_ranking(
                assignment_id=assignment.pk,
                labeler=request.user,
                groups=groups,
                ratings=_ratings_from_form(request.POST, answer_ids),
                flags=_flags_from_form(request.POST, answer_ids),
                time_spent_ms=time_spent_ms,
            )
    except service.InvalidLabel as error:
        return _render_task(request, assignment, error=str(error), form=request.POST, status=400)
    except service.AssignmentError as error:
        messages.error(request, str(error))
        return _to_next_task(request, assignment)
    if result.already_submitted:
        messages.info(request, "That task was already submitted; nothing was stored twice.")
    else:
        messages.success(request, "Submitted. Here is your next task.")
    return _to_next_task(request, assignment)


@require_POST
@role_required(LABELER)
def task_skip(request, assignment_id: int):
    assignment = _own_assignment(request, assignment_id)
    try:
        service.skip_task(
            assignment_id=assignment.pk,
            labeler=request.user,
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
            time_spent_ms=_int_or_none(request.POST.get("time_spent_ms")),
        )
    except service.InvalidLabel as error:
        return _render_task(request, assignment, error=str(error), form=request.POST, status=400)
    except service.AssignmentError as error:
        messages.error(request, str(error))
    else:
        messages.info(request, "Skipped. Here is your next task.")
    return _to_next_task(request, assignment)


@require_POST
@role_required(LABELER)
def markdown_preview(request):
    text = normalize_newlines(request.POST.get("text", ""))[: settings.MAX_TEXT_CHARS]
    # Not cached: a preview's text is seen once, and every keystroke would add an entry.
    return HttpResponse(markdown_to_html(without_nul(text)), content_type="text/html; charset=utf-8")

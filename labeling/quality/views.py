"""Disagreement review for the admin role: prompts by lowest agreement, one prompt's rankings side by
side, and the decisions taken on them (labeling.quality.review)."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.roles import ADMIN, role_required

from ..models import Prompt, Queue
from . import review

REVIEW_PAGE_SIZE = 50

BULK_ACTIONS = {
    "exclude": ("Exclude from datasets", review.exclude_prompts),
    "include": ("Include again", review.include_prompts),
    "raise_overlap": ("Ask for more labels", review.raise_overlap),
    "requeue": ("Re-queue (front of the line)", review.requeue_prompts),
}


@role_required(ADMIN)
def review_list(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    page = Paginator(review.review_rows(queue=queue), REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "labeling/manage/review_list.html",
        {"queue": queue, "page": page, "rows": review.attach_prompts(list(page)), "actions": BULK_ACTIONS,
         "max_step": review.MAX_OVERLAP_STEP},
    )


@require_POST
@role_required(ADMIN)
def review_bulk(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    action = BULK_ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        messages.error(request, "Choose an action.")
        return redirect(_back(request, queue))
    label, apply = action
    extra = {"by": request.POST.get("by", "")} if apply is review.raise_overlap else {}
    try:
        count = apply(queue=queue, prompt_ids=request.POST.getlist("prompt"), reason=request.POST.get("reason"),
                      user=request.user, **extra)
    except review.ReviewError as error:
        messages.error(request, f"Nothing was changed: {error}")
    else:
        messages.success(request, f"{label}: {count} prompt{'s' if count != 1 else ''}.")
    return redirect(_back(request, queue))


def _back(request, queue: Queue) -> str:
    """Back to the page the form was on (only our own review pages)."""
    page = request.POST.get("page", "")
    suffix = f"?page={page}" if page.isdecimal() else ""
    return reverse("manage-review", args=[queue.pk]) + suffix


@role_required(ADMIN)
def prompt_detail(request, queue_id: int, prompt_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    try:
        data = review.prompt_review(queue=queue, prompt_id=prompt_id)
    except Prompt.DoesNotExist:
        raise Http404("No such prompt in this queue.") from None
    return render(
        request, "labeling/manage/review_prompt.html",
        {"queue": queue, "review": data, "max_step": review.MAX_OVERLAP_STEP},
    )


@require_POST
@role_required(ADMIN)
def prompt_action(request, queue_id: int, prompt_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    prompt = get_object_or_404(Prompt, queue=queue, pk=prompt_id)
    action, reason, user = request.POST.get("action", ""), request.POST.get("reason"), request.user
    try:
        if action in BULK_ACTIONS:
            label, apply = BULK_ACTIONS[action]
            extra = {"by": request.POST.get("by", "")} if apply is review.raise_overlap else {}
            apply(queue=queue, prompt_ids=[prompt.pk], reason=reason, user=user, **extra)
        elif action == "set_gold":
            label = "Made a gold item"
            review.set_gold(queue=queue, prompt_id=prompt.pk, groups=_reference(request, queue, prompt),
                            reason=reason, user=user)
        elif action == "clear_gold":
            label = "No longer a gold item"
            review.clear_gold(queue=queue, prompt_id=prompt.pk, reason=reason, user=user)
        else:
            raise review.ReviewError("Choose an action.")
    except review.ReviewError as error:
        messages.error(request, f"Nothing was changed: {error}")
    else:
        messages.success(request, f"{label}.")
    return redirect("manage-review-prompt", queue.pk, prompt.pk)


def _reference(request, queue: Queue, prompt: Prompt) -> list:
    """The reference ranking chosen on the form: the consensus, or one labeler's ranking of this prompt."""
    choice = request.POST.get("reference", "")
    data = review.prompt_review(queue=queue, prompt_id=prompt.pk)
    if choice == "consensus":
        if data.consensus is None:
            raise review.ReviewError("The consensus needs rankings from at least two labelers.")
        return data.consensus
    for column in data.columns:
        if choice == f"ranking-{column.ranking.pk}":
            return column.ranking.groups
    raise review.ReviewError("Choose the ranking to use as the reference.")

"""Quality pages for the admin role: a queue's agreement page and its labeler table as CSV; the disagreement
review: prompts by lowest agreement, one prompt's rankings side by side, and the decisions taken on them
(labeling.quality.review)."""
import csv

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from core.roles import ADMIN, role_required
from core.text import csv_cell

from ..models import Prompt, Queue
from . import review
from .selectors import LOW_AGREEMENT_GAP, queue_agreement_page

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
        "labeling/quality/review_list.html",
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
        request, "labeling/quality/review_prompt.html",
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


@role_required(ADMIN)
def queue_agreement(request, queue_id: int):
    queue = get_object_or_404(Queue, pk=queue_id)
    return render(
        request,
        "labeling/quality/queue_agreement.html",
        {"queue": queue, "page": queue_agreement_page(queue=queue), "low_gap": LOW_AGREEMENT_GAP},
    )


AGREEMENT_CSV_COLUMNS = [
    "username", "labeler_id", "rankings", "median_seconds", "skip_rate", "agreement", "ci_low", "ci_high", "pairs",
    "consensus_agreement", "gold_accuracy", "gold_prompts", "gold_flagged", "low_agreement",
]  # fmt: skip


@role_required(ADMIN)
def queue_agreement_csv(request, queue_id: int):
    """The agreement page's labeler table as CSV, under a first "(queue)" row with the pooled figure."""
    queue = get_object_or_404(Queue, pk=queue_id)
    page = queue_agreement_page(queue=queue)
    pooled = page.report.queue
    rows = [{"username": "(queue)", "agreement": pooled.rate, "ci_low": pooled.ci_low, "ci_high": pooled.ci_high,
             "pairs": pooled.n}]  # fmt: skip
    rows += [
        {
            "username": row["username"],
            "labeler_id": row["labeler_id"],
            "rankings": row["tasks"],
            "median_seconds": row["median_seconds"],
            "skip_rate": row["skip_rate"],
            "agreement": row["rate"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "pairs": row["n"],
            "consensus_agreement": row["consensus_rate"],
            "gold_accuracy": row["gold_rate"],
            "gold_prompts": row["gold_prompts"],
            "gold_flagged": row["gold_flagged"],
            "low_agreement": row["low"],
        }
        for row in page.labelers
    ]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    # slugify keeps only ASCII letters, digits, - and _: nothing that could break out of the header.
    response["Content-Disposition"] = f'attachment; filename="agreement-{queue.pk}-{slugify(queue.name)[:60]}.csv"'
    writer = csv.DictWriter(response, fieldnames=AGREEMENT_CSV_COLUMNS)
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    return response

"""Rankings in the database where a learnable rule decides the order (for dataset and training tests)."""
import random

from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import Answer, Prompt, Queue
from tests.conftest import make_user

MARKER = "zebra"
WORDS = ["river", "stone", "cloud", "green", "quiet", "lamp", "field", "paper", "window", "orange", "bread", "salt"]


def marker_queue(name: str = "Marker", *, prompts: int = 24, answers: int = 4, seed: int = 0) -> Queue:
    """Prompts whose answers are random words; about half of each prompt's answers contain MARKER."""
    from labeling.assignment.services import sync_tasks

    rng = random.Random(seed)
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    for i in range(prompts):
        prompt = Prompt.objects.create(queue=queue, text=f"question {i} " + " ".join(rng.sample(WORDS, 3)),
                                       content_hash=f"{name}-{i}")
        marked = rng.sample(range(answers), k=answers // 2)
        Answer.objects.bulk_create(
            Answer(prompt=prompt, position=j,
                   # Four words either way, so the longer answer does not give the rule away.
                   text=" ".join(rng.sample(WORDS, 3) + [MARKER if j in marked else rng.choice(WORDS)]), model="m")
            for j in range(answers)
        )  # fmt: skip
    sync_tasks(queue)
    return queue


def rank_by_marker(queue: Queue, *, labelers: int = 2, seed: int = 0, flag_first: bool = False) -> list:
    """Each labeler ranks every prompt: answers with MARKER first, tied, then the rest, tied; so every
    pair is decided by the rule and a model can learn all of them."""
    rng = random.Random(seed)
    users = [make_user(f"{queue.name.lower()}-labeler-{i}", "labeler") for i in range(labelers)]
    for user in users:
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            texts = dict(Answer.objects.filter(pk__in=assignment.answer_order).values_list("pk", "text"))
            marked = [pk for pk in assignment.answer_order if MARKER in texts[pk]]
            unmarked = [pk for pk in assignment.answer_order if MARKER not in texts[pk]]
            rng.shuffle(marked)  # the order inside a tie group means nothing; vary it
            flags = {marked[0]: ["harmful"]} if flag_first and marked else None
            submit_ranking(assignment_id=assignment.pk, labeler=user, groups=[marked, unmarked], flags=flags)
    return users

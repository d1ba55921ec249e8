"""Labelers' agreement with the gold rankings of a queue, and who falls below the queue's threshold."""
import pandas as pd

from ..models import AnswerLabel, Queue, Task, TaskKind
from ..ranking import ranks_by_answer
from .report import LABEL_COLUMNS, REFERENCE_COLUMNS, gold_agreement

# Too few gold prompts say little about a labeler: a single odd prompt should not flag them.
GOLD_MIN_PROMPTS = 3


def gold_scores(*, queue: Queue) -> pd.DataFrame:
    """gold_agreement of every labeler who ranked a gold prompt of `queue`, plus a bool column `flagged`.

    A labeler is flagged once they ranked GOLD_MIN_PROMPTS gold prompts with a rate below the queue's
    gold threshold. Excluded prompts are left out, as from every dataset. Two queries.
    """
    gold_tasks = Task.objects.filter(
        prompt__queue=queue, prompt__excluded=False, kind=TaskKind.RANKING, gold_groups__isnull=False
    )
    reference = pd.DataFrame(
        [
            (prompt_id, answer_id, rank)
            for prompt_id, groups in gold_tasks.values_list("prompt_id", "gold_groups")
            for answer_id, rank in ranks_by_answer(groups).items()
        ],
        columns=REFERENCE_COLUMNS,
    )
    labels = pd.DataFrame(
        list(
            AnswerLabel.objects.filter(ranking__assignment__task__in=gold_tasks).values_list(
                "ranking__assignment__task__prompt_id", "ranking__assignment__labeler_id", "answer_id", "rank"
            )
        ),
        columns=LABEL_COLUMNS,
    )
    scores = gold_agreement(labels, reference)
    below = (scores["rate"] < queue.gold_threshold).fillna(False)
    scores["flagged"] = ((scores["prompts"] >= GOLD_MIN_PROMPTS) & below).astype(bool)
    return scores

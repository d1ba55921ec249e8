"""Reads for evaluation rounds: the figures of a round (its page and the API), its progress and sample answers.

The maths is rewardtrain.ml.winrate's; this module reads the round's rankings (tie groups of answer ids) and the
policy and reward of each of its answers (Answer.meta, written by rewardtrain.evaluation) and hands them over.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from labeling.models import Answer, Prompt, Ranking, Task, TaskKind

from .evaluation import compared_policies
from .ml.winrate import WinRate, pairwise_wins, predicted_win_rate, reward_model_accuracy, win_rate_with_interval
from .models import EvaluationRound, Policy

RESAMPLES = 2000  # bootstrap draws per interval: ±0.01 on a 95% bound, in milliseconds for a round's size


@dataclass(frozen=True)
class PolicyFigures:
    """One policy against the baseline."""

    policy: Policy
    win_rate: WinRate  # the labelers': rate, 95% interval (low, high), prompts and comparisons counted
    predicted_win_rate: float | None  # the reward model's, from the rewards of the same answer pairs
    reward_model_accuracy: float | None  # on the labelers' orderings of this policy's and the baseline's answers


@dataclass(frozen=True)
class RoundFigures:
    prompts: int  # prompts holding every policy's answers
    tasks: int  # their ranking tasks
    rankings: int  # submitted so far
    rankings_wanted: int  # the tasks' overlaps added up
    has_rewards: bool  # the answers were scored by the round's reward model
    reward_model_accuracy: float | None  # on every pair the labelers ordered
    policies: list[PolicyFigures]


def _restricted(ranking: list[list[int]], keep) -> list[list[int]]:
    """The ranking over the answers `keep` accepts, empty tie groups dropped."""
    groups = [[answer_id for answer_id in group if keep(answer_id)] for group in ranking]
    return [group for group in groups if group]


def round_figures(round_: EvaluationRound) -> RoundFigures:
    """Per policy: the labelers' win rate against the baseline with its prompt-bootstrap interval, and what the reward
    model predicted; the rankings so far. Ties count half; answers from outside the round count for nothing."""
    policy_of: dict[int, str] = {}
    rewards: dict[int, float] = {}
    prompt_rewards: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    prompts: set[int] = set()
    answers = Answer.objects.filter(prompt__queue_id=round_.queue_id, meta__evaluation_round=round_.pk)
    for answer_id, prompt_id, meta in answers.values_list("pk", "prompt_id", "meta"):
        prompts.add(prompt_id)
        policy_of[answer_id] = str(meta.get("policy"))
        if isinstance(meta.get("reward"), int | float):
            rewards[answer_id] = float(meta["reward"])
            prompt_rewards[prompt_id][policy_of[answer_id]].append(rewards[answer_id])
    rankings: dict[int, list[list[list[int]]]] = defaultdict(list)
    rows = Ranking.objects.filter(assignment__task__queue_id=round_.queue_id, assignment__task__kind=TaskKind.RANKING)
    for prompt_id, groups in rows.values_list("assignment__task__prompt_id", "groups"):
        rankings[prompt_id].append(_restricted(groups, policy_of.__contains__))
    records = pairwise_wins(rankings, policy_of)
    scored = _scored_rankings(rankings, rewards)

    compared = compared_policies(round_)
    baseline = str(round_.baseline_id)
    figures = []
    for policy in compared[1:]:
        mine = str(policy.pk)
        pairs_policy, pairs_baseline = [], []
        for by_policy in prompt_rewards.values():
            for reward in by_policy.get(mine, []):
                pairs_policy.extend([reward] * len(by_policy.get(baseline, [])))
                pairs_baseline.extend(by_policy.get(baseline, []))
        pair = {mine, baseline}
        these = {
            prompt_id: [_restricted(ranking, lambda a, pair=pair: policy_of[a] in pair) for ranking in prompt_rankings]
            for prompt_id, prompt_rankings in scored.items()
        }
        figures.append(PolicyFigures(
            policy=policy,
            win_rate=win_rate_with_interval(records, mine, baseline, resamples=RESAMPLES),
            predicted_win_rate=predicted_win_rate(pairs_policy, pairs_baseline),
            reward_model_accuracy=reward_model_accuracy(these, rewards) if rewards else None,
        ))  # fmt: skip
    tasks = Task.objects.filter(queue_id=round_.queue_id, kind=TaskKind.RANKING).aggregate(
        n=Count("pk"), wanted=Sum("overlap", filter=Q(excluded=False, gold_groups__isnull=True))
    )
    return RoundFigures(
        prompts=len(prompts),
        tasks=tasks["n"],
        rankings=sum(len(prompt_rankings) for prompt_rankings in rankings.values()),
        rankings_wanted=tasks["wanted"] or 0,
        has_rewards=bool(rewards),
        reward_model_accuracy=reward_model_accuracy(scored, rewards) if rewards else None,
        policies=figures,
    )


def _scored_rankings(rankings: dict, rewards: dict[int, float]) -> dict:
    """The rankings over the answers that have a reward (every answer of a round with a reward model)."""
    return {
        prompt_id: [_restricted(ranking, rewards.__contains__) for ranking in prompt_rankings]
        for prompt_id, prompt_rankings in rankings.items()
    }


def figures_as_dict(figures: RoundFigures) -> dict:
    """The figures as the API gives them (EvaluationRoundDetailSerializer)."""
    return {
        "prompts": figures.prompts, "tasks": figures.tasks, "rankings": figures.rankings,
        "rankings_wanted": figures.rankings_wanted, "reward_model_accuracy": figures.reward_model_accuracy,
        "policies": [
            {
                "policy": row.policy.pk, "name": str(row.policy), "win_rate": row.win_rate.rate,
                "low": row.win_rate.low, "high": row.win_rate.high, "prompts": row.win_rate.prompts,
                "comparisons": row.win_rate.comparisons, "predicted_win_rate": row.predicted_win_rate,
                "reward_model_accuracy": row.reward_model_accuracy,
            }
            for row in figures.policies
        ],
    }  # fmt: skip


def sample_answers(round_: EvaluationRound, *, prompts: int = 3) -> list[tuple[Prompt, list[tuple[Answer, Policy]]]]:
    """A few prompts with their answers in stored order and the policy that wrote each (staff only, never labelers)."""
    by_id = {policy.pk: policy for policy in compared_policies(round_)}
    chosen = Prompt.objects.filter(queue_id=round_.queue_id, answers__meta__evaluation_round=round_.pk).distinct()
    result = []
    for prompt in chosen.order_by("pk")[:prompts]:
        answers = prompt.answers.filter(meta__evaluation_round=round_.pk).order_by("position")
        result.append((prompt, [(answer, by_id.get(answer.meta.get("policy"))) for answer in answers]))
    return result

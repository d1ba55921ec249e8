"""Agreement between labelers, consensus rankings and queue-wide scores. Plain functions on plain data.

A ranking is stored as tie groups of answer ids, best first: [["a"], ["b", "c"], ["d"]]. Most measures here
work on rank vectors aligned by answer instead: [1, 2, 2, 4] (lower is better; equal values are ties).
Every measure returns None rather than NaN when the data cannot define it ("not enough data").
docs/agreement.md gives the formulas, worked examples, and which figure to read for what.
"""
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations
from math import sqrt
from typing import Literal, TypeVar

import numpy as np

from ..ranking import ranks_from_groups

Id = TypeVar("Id", bound=Hashable)
Level = Literal["nominal", "ordinal", "interval", "ratio"]




def _check_same_length(r1: Sequence[float], r2: Sequence[float]) -> None:
    if len(r1) != len(r2):
        raise ValueError(f"The rank vectors have different lengths ({len(r1)} and {len(r2)}).")


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pairwise_agreement(r1: Sequence[float], r2: Sequence[float]) -> tuple[float | None, int]:
    """Fraction of answer pairs ordered the same way, over the pairs both labelers ordered strictly.

    Pairs tied by either labeler are left out. Returns (rate, n) with n the number of pairs used;
    rate is None when n == 0.
    """
    _check_same_length(r1, r2)
    same = used = 0
    for i, j in combinations(range(len(r1)), 2):
        s1, s2 = _sign(r1[i] - r1[j]), _sign(r2[i] - r2[j])
        if s1 and s2:
            used += 1
            same += s1 == s2
    return (same / used if used else None), used


def kendall_tau_b(r1: Sequence[float], r2: Sequence[float]) -> float | None:
    """Kendall's tau-b, which corrects for ties; None when either vector is all tied or too short."""
    _check_same_length(r1, r2)
    concordant = discordant = tied_1_only = tied_2_only = 0
    for i, j in combinations(range(len(r1)), 2):
        s1, s2 = _sign(r1[i] - r1[j]), _sign(r2[i] - r2[j])
        if s1 and s2:
            if s1 == s2:
                concordant += 1
            else:
                discordant += 1
        elif s2:
            tied_1_only += 1
        elif s1:
            tied_2_only += 1
    denominator = (concordant + discordant + tied_1_only) * (concordant + discordant + tied_2_only)
    if denominator == 0:
        return None
    return (concordant - discordant) / sqrt(denominator)


def _midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n with tied values sharing the mean of the positions they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def kendall_w(rankings: Sequence[Sequence[float]], tie_correction: bool = True) -> float | None:
    """Kendall's coefficient of concordance W of m labelers (rows) over n answers (columns).

    Rank values may hold ties; they are turned into mid-ranks first. None when there are fewer than
    two labelers or two answers, or when every labeler tied everything.
    """
    m = len(rankings)
    if m < 2:
        return None
    n = len(rankings[0])
    if any(len(row) != n for row in rankings):
        raise ValueError("Every labeler must rank the same answers.")
    if n < 2:
        return None
    rows = [_midranks(row) for row in rankings]
    totals = [sum(row[j] for row in rows) for j in range(n)]
    mean = m * (n + 1) / 2
    s = sum((t - mean) ** 2 for t in totals)
    denominator = m * m * (n**3 - n)
    if tie_correction:
        for row in rankings:
            for t in _tie_sizes(row):
                denominator -= m * (t**3 - t)
    if denominator <= 0:
        return None
    return 12 * s / denominator


def _tie_sizes(values: Iterable[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [t for t in counts.values() if t > 1]


def krippendorff_alpha(data: Sequence[Sequence[float | Hashable | None]], level: Level) -> float | None:
    """Krippendorff's alpha of coders (rows) over units (columns); None marks a missing value.

    Units with fewer than two values are not pairable and are left out. None when nothing is
    pairable or only one value occurs (no expected disagreement).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"Unknown level of measurement {level!r}.")
    n_units = len(data[0]) if data else 0
    if any(len(row) != n_units for row in data):
        raise ValueError("Every coder must have one entry per unit (None when missing).")
    units = [[row[u] for row in data if row[u] is not None] for u in range(n_units)]
    units = [values for values in units if len(values) >= 2]
    if not units:
        return None
    domain = sorted({v for values in units for v in values}) if level != "nominal" else list(
        dict.fromkeys(v for values in units for v in values)
    )
    index = {v: i for i, v in enumerate(domain)}
    k = len(domain)
    # Coincidence matrix: each unit with m values contributes its m(m-1) ordered pairs, weighted 1/(m-1).
    coincidences = np.zeros((k, k))
    for values in units:
        weight = 1 / (len(values) - 1)
        for a, b in combinations(values, 2):
            coincidences[index[a], index[b]] += weight
            coincidences[index[b], index[a]] += weight
    marginals = coincidences.sum(axis=1)
    total = marginals.sum()
    delta = _distance_matrix(domain, marginals, level)
    observed = (coincidences * delta).sum()
    expected = (np.outer(marginals, marginals) * delta).sum() / (total - 1)
    if expected == 0:
        return None
    return float(1 - observed / expected)


def _distance_matrix(domain: list, marginals: np.ndarray, level: Level) -> np.ndarray:
    """Squared difference function delta² between every two values, per level of measurement."""
    k = len(domain)
    if level == "nominal":
        return 1 - np.eye(k)
    values = np.asarray(domain, dtype=float)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ratio":
        sums = values[:, None] + values[None, :]
        diffs = values[:, None] - values[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(sums == 0, 0.0, (diffs / sums) ** 2)
        return out
    # Ordinal: the distance is the mass of values between the two, counting each end half.
    cumulative = np.concatenate(([0.0], np.cumsum(marginals)))
    out = np.zeros((k, k))
    for c in range(k):
        for d in range(c + 1, k):
            mass = cumulative[d + 1] - cumulative[c] - (marginals[c] + marginals[d]) / 2
            out[c, d] = out[d, c] = mass**2
    return out


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a subjects x categories table of how many raters chose each category.

    Every subject must have the same number of ratings. None when there are no subjects, fewer than
    two raters per subject, or every rating falls in one category.
    """
    table = np.asarray(counts, dtype=float)
    if table.size == 0 or table.ndim != 2:
        return None
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError("Every subject must have the same number of ratings.")
    n = raters[0]
    if n < 2:
        return None
    share = table.sum(axis=0) / table.sum()
    observed = ((table * table).sum(axis=1) - n) / (n * (n - 1))
    chance = float((share * share).sum())
    if chance >= 1:
        return None
    return float((observed.mean() - chance) / (1 - chance))


def cohen_kappa(
    a: Sequence[Hashable | None],
    b: Sequence[Hashable | None],
    weights: Literal["linear", "quadratic"] | None = None,
) -> float | None:
    """Cohen's kappa of two coders' labels on the same items; pairs with a None are left out.

    Unweighted kappa takes any categories (ints, strings). Weighted kappa needs numeric categories and
    weighs a disagreement by |x - y| ("linear") or (x - y)² ("quadratic"). None when no item is
    labeled by both or chance agreement is already perfect.
    """
    if len(a) != len(b):
        raise ValueError(f"The label sequences have different lengths ({len(a)} and {len(b)}).")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"Unknown weights {weights!r}.")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    categories = list(dict.fromkeys(v for pair in pairs for v in pair))
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in pairs:
        table[index[x], index[y]] += 1
    table /= len(pairs)
    chance = np.outer(table.sum(axis=1), table.sum(axis=0))
    if weights is None:
        disagreement = 1 - np.eye(len(categories))
    else:
        values = np.asarray(categories, dtype=float)
        diff = np.abs(values[:, None] - values[None, :])
        disagreement = diff if weights == "linear" else diff**2
    expected = float((disagreement * chance).sum())
    if expected == 0:
        return None
    return float(1 - (disagreement * table).sum() / expected)


def _answer_order(rankings: Sequence[Sequence[Iterable[Id]]]) -> list[Id]:
    """The answer ids all rankings place, sorted; raises if the rankings do not cover the same ids."""
    sets = [{answer for group in ranking for answer in group} for ranking in rankings]
    if any(s != sets[0] for s in sets):
        raise ValueError("Every ranking must place the same answers.")
    return sorted(sets[0])


def _groups_by_key(ids: list[Id], key: Mapping[Id, float]) -> list[list[Id]]:
    groups: list[list[Id]] = []
    for answer in sorted(ids, key=lambda i: key[i]):
        if groups and key[groups[-1][0]] == key[answer]:
            groups[-1].append(answer)
        else:
            groups.append([answer])
    return groups


def consensus_ranking(
    rankings: Sequence[Sequence[Iterable[Id]]],
    method: Literal["ranked_pairs", "borda"] = "ranked_pairs",
) -> list[list[Id]]:
    """The consensus of several tie-group rankings of the same answers, as tie groups, best first.

    "ranked_pairs" (Tideman): for each pair, count the rankings placing one strictly above the other.
    Pairs with a strict majority are locked in order of margin (largest first), then winning votes
    (largest first), then (winner, loser) in sorted answer-id order; a pair that would close a cycle
    is skipped, and a pair with equal support both ways gives no edge. The groups are the layers of
    the locked graph: first every answer nothing beats, then every answer beaten only by the first
    group, and so on. Two answers share a group only when neither beats the other, directly or
    through a chain of locked pairs.

    "borda": each answer scores the sum of its mid-ranks (lower is better); equal scores tie.
    Within a group, answers are in sorted id order.
    """
    if method not in ("ranked_pairs", "borda"):
        raise ValueError(f"Unknown consensus method {method!r}.")
    if not rankings:
        return []
    ids = _answer_order(rankings)
    if not ids:
        return []
    vectors = [ranks_from_groups(ranking, ids) for ranking in rankings]
    if method == "borda":
        # Twice the mid-rank is an integer, so equal scores compare exactly.
        scores = dict.fromkeys(ids, 0.0)
        for vector in vectors:
            for answer, rank in zip(ids, _midranks(vector), strict=True):
                scores[answer] += 2 * rank
        return _groups_by_key(ids, scores)
    return _ranked_pairs(ids, vectors)


def _ranked_pairs(ids: list[Id], vectors: list[list[int]]) -> list[list[Id]]:
    k = len(ids)
    support = [[0] * k for _ in range(k)]
    for vector in vectors:
        for i, j in combinations(range(k), 2):
            if vector[i] < vector[j]:
                support[i][j] += 1
            elif vector[j] < vector[i]:
                support[j][i] += 1
    majorities = [
        (support[w][lo] - support[lo][w], support[w][lo], w, lo)
        for w in range(k)
        for lo in range(k)
        if support[w][lo] > support[lo][w]
    ]
    majorities.sort(key=lambda m: (-m[0], -m[1], m[2], m[3]))
    beats: list[set[int]] = [set() for _ in range(k)]

    def reaches(start: int, goal: int) -> bool:
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for nxt in beats[node] - seen:
                seen.add(nxt)
                stack.append(nxt)
        return False

    for _, _, winner, loser in majorities:
        if not reaches(loser, winner):
            beats[winner].add(loser)
    remaining = set(range(k))
    groups: list[list[Id]] = []
    while remaining:
        beaten = {lo for w in remaining for lo in beats[w]}
        layer = sorted(remaining - beaten)
        groups.append([ids[i] for i in layer])
        remaining -= set(layer)
    return groups


def bradley_terry(
    comparisons: Iterable[tuple[Id, Id]],
    *,
    iterations: int = 10_000,
    tol: float = 1e-10,
    prior: float = 1.0,
) -> dict[Id, float]:
    """Bradley-Terry log-strengths (mean 0, higher is better) from (winner, loser) comparisons.

    Fitted with the MM algorithm of Hunter (2004). As a prior, every item also plays `prior` won and
    `prior` lost virtual games against a fixed reference of strength 1, so items that never lose or
    never win still get finite scores; items with little data are pulled towards 0.
    """
    pairs = list(comparisons)
    items = list(dict.fromkeys(item for pair in pairs for item in pair))
    if not items:
        return {}
    index = {item: i for i, item in enumerate(items)}
    k = len(items)
    wins = np.zeros(k)
    games = np.zeros((k, k))
    for winner, loser in pairs:
        if winner == loser:
            raise ValueError(f"{winner!r} cannot be compared with itself.")
        wins[index[winner]] += 1
        games[index[winner], index[loser]] += 1
        games[index[loser], index[winner]] += 1
    strength = np.ones(k)
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        denominator += 2 * prior / (strength + 1)
        updated = (wins + prior) / denominator
        change = np.max(np.abs(np.log(updated) - np.log(strength)))
        strength = updated
        if change < tol:
            break
    scores = np.log(strength)
    scores -= scores.mean()
    return {item: float(score) for item, score in zip(items, scores, strict=True)}


def leave_one_out_agreement(
    rankings_by_labeler: Mapping[Hashable, Sequence[Iterable[Id]]],
    answer_ids: Sequence[Id],
    method: Literal["ranked_pairs", "borda"] = "ranked_pairs",
) -> dict[Hashable, tuple[float | None, int]]:
    """Each labeler's pairwise agreement with the consensus of the other labelers of the same prompt.

    A labeler alone gets (None, 0). Pairs the labeler or the consensus tie are left out, as in
    pairwise_agreement.
    """
    result: dict[Hashable, tuple[float | None, int]] = {}
    for labeler, groups in rankings_by_labeler.items():
        others = [g for other, g in rankings_by_labeler.items() if other != labeler]
        if not others:
            result[labeler] = (None, 0)
            continue
        consensus = consensus_ranking(others, method=method)
        result[labeler] = pairwise_agreement(
            ranks_from_groups(groups, answer_ids), ranks_from_groups(consensus, answer_ids)
        )
    return result

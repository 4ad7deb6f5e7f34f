"""Accuracy with an interval: AIME has 30 problems, so a point estimate alone misleads."""

from __future__ import annotations

import random
from collections import Counter
from statistics import mean


def bootstrap_ci(values: list[float], num_samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampling problems)."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(num_samples))
    lo = means[int((1 - level) / 2 * num_samples)]
    hi = means[min(num_samples - 1, int((1 + level) / 2 * num_samples))]
    return (lo, hi)


def accuracy_summary(correct: list[bool] | list[float], num_samples: int = 1000, seed: int = 0) -> dict:
    vals = [float(c) for c in correct]
    lo, hi = bootstrap_ci(vals, num_samples, seed)
    return {"accuracy": mean(vals) if vals else float("nan"), "ci95_low": lo, "ci95_high": hi,
            "num_problems": len(vals)}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), from n samples with c correct."""
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(k):
        prob_all_wrong *= (n - c - i) / (n - i)
    return 1.0 - prob_all_wrong


def majority_correct(answers: list[str | None], correct: list[bool]) -> bool:
    """maj@k: the most common extracted answer (first seen wins a tie) decides; no answer is wrong."""
    votes = Counter(a.strip() for a in answers if a is not None and a.strip())
    if not votes:
        return False
    top = votes.most_common(1)[0][0]
    return correct[[a.strip() if a else a for a in answers].index(top)]


def sampled_summary(per_problem: list[list[dict]], ks: list[int], num_samples: int = 1000, seed: int = 0) -> dict:
    """Metrics over n samples per problem (rows with `extracted`, `correct`): mean pass@1 with its
    bootstrap interval, unbiased pass@k and maj@k for each k <= n."""
    n = len(per_problem[0])
    pass1 = [sum(r["correct"] for r in rows) / n for rows in per_problem]
    summary = accuracy_summary(pass1, num_samples, seed)   # accuracy = mean pass@1
    summary["samples_per_problem"] = n
    for k in (k for k in ks if k <= n):
        summary[f"pass@{k}"] = mean(pass_at_k(n, sum(r["correct"] for r in rows), k) for rows in per_problem)
        summary[f"maj@{k}"] = mean(float(majority_correct([r["extracted"] for r in rows[:k]],
                                                           [r["correct"] for r in rows[:k]])) for rows in per_problem)
    return summary

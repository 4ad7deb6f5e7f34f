"""Accuracy with an interval: AIME has 30 problems, so a point estimate alone misleads."""

from __future__ import annotations

import random
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


def accuracy_summary(correct: list[bool], num_samples: int = 1000, seed: int = 0) -> dict:
    vals = [float(c) for c in correct]
    lo, hi = bootstrap_ci(vals, num_samples, seed)
    return {"accuracy": mean(vals) if vals else float("nan"), "ci95_low": lo, "ci95_high": hi,
            "num_problems": len(vals)}

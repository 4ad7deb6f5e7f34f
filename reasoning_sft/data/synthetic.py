"""Synthetic long-CoT arithmetic: several steps, reflection phrases, numbers everywhere, a boxed answer.

Small enough for a 1M-parameter model to learn on CPU in minutes, rich enough that every ablation
(digit corruption, keyword removal, step shuffling...) has something to act on.
"""

from __future__ import annotations

import hashlib
import random

from reasoning_sft.errors import ConfigError
from reasoning_sft.data.records import Record

QUESTION_TEMPLATES = [
    "What is {expr}?",
    "Compute {expr}.",
    "Find the value of {expr}.",
]
# Reflections that re-check a step: true statements, so the trace stays correct.
REFLECTIONS = [
    "Wait, let me double-check: {total} - {term} = {prev}. Yes, that is right.",
    "Hmm, let me verify this step: {prev} + {term} is {total}. Correct.",
    "Alternatively, {term} + {prev} = {total}. Same result.",
]


FINAL_CHECK = "Wait, let me double-check: {prev} + {term} = {total}. Yes, the total is {total}."


def _split_of(expr: str) -> str:
    # Held-out problems are chosen by a hash of the expression, so train and test never overlap,
    # whatever the seed or the sample count.
    return "test" if int(hashlib.md5(expr.encode()).hexdigest(), 16) % 10 == 0 else "train"


COLUMNS = ["Ones", "Tens", "Hundreds", "Thousands", "Ten-thousands"]


def _column_steps(a: int, b: int) -> str:
    """Column addition, ones first: `Ones: 8 + 4 = 12, carry 1. Tens: 7 + 6 + 1 = 14.`"""
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    parts, carry = [], 0
    for i in range(width):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        total = x + y + carry
        terms = f"{x} + {y}" if i == 0 else f"{x} + {y} + {carry}"
        last = i == width - 1
        parts.append(f"{COLUMNS[i]}: {terms} = {total}" + ("." if last else f", carry {total // 10}."))
        carry = total // 10
    return " ".join(parts)


def _make_record(terms: list[int], rng: random.Random, reflection_prob: float,
                 column_steps: bool = False, final_check_prob: float = 0.0) -> Record:
    expr = " + ".join(map(str, terms))
    question = rng.choice(QUESTION_TEMPLATES).format(expr=expr)
    lines = [f"I need to add {len(terms)} numbers one at a time.", f"Start with {terms[0]}."]
    total = terms[0]
    for step, term in enumerate(terms[1:], 1):
        prev, total = total, total + term
        if column_steps:
            lines.append(f"Step {step}: {prev} + {term}. {_column_steps(prev, term)} So {prev} + {term} = {total}.")
        else:
            lines.append(f"Step {step}: {prev} + {term} = {total}.")
        if rng.random() < reflection_prob:
            lines.append(rng.choice(REFLECTIONS).format(prev=prev, term=term, total=total))
    lines.append(f"So the total is {total}.")
    # A re-check after the conclusion, as R1 traces do ("Wait, ..."). Chosen by a hash of the problem,
    # not the generator's random stream: the problems and every other choice stay the same.
    if final_check_prob and int(hashlib.md5(f"check:{expr}".encode()).hexdigest(), 16) % 1000 < 1000 * final_check_prob:
        lines.append(FINAL_CHECK.format(prev=prev, term=term, total=total))
    return Record(
        id="", question=question, thinking="\n".join(lines),
        answer=f"The answer is $\\boxed{{{total}}}$.",
        source="synthetic", domain="arithmetic", metadata={"gold_answer": str(total)},
    )


def generate_records(num_problems: int, seed: int = 0, split: str = "train", num_terms: int = 3,
                     digits: int = 2, reflection_prob: float = 0.5, column_steps: bool = False,
                     final_check_prob: float = 0.0) -> list[Record]:
    """`num_problems` distinct problems of one split; the same seed gives a prefix-stable list.

    column_steps: spell each addition out column by column (with carries), a longer trace whose every
    digit is a local sum; False gives one line per addition.
    final_check_prob: the share of traces that re-check the last step after concluding ("So the total
    is 226.\nWait, let me double-check: 226 - 84 = 142. Yes, that is right."): a model that has seen
    "Wait" after a conclusion can be extended there by budget forcing, as s1 extends its model."""
    if split not in ("train", "test"):
        raise ConfigError(f"data.source.split={split!r}: expected 'train' or 'test'")
    rng = random.Random(f"{seed}-{split}")
    lo, hi = 10 ** (digits - 1), 10 ** digits - 1
    capacity = (hi - lo + 1) ** num_terms // 20   # a test split gets ~1/10: stay well under it
    if num_problems > capacity:
        raise ConfigError(f"data.source.num_problems={num_problems}: {num_terms} terms of {digits} digits give "
                          f"about {capacity} distinct problems per split at most")
    records, seen = [], set()
    while len(records) < num_problems:
        terms = [rng.randint(lo, hi) for _ in range(num_terms)]
        expr = " + ".join(map(str, terms))
        if expr in seen or _split_of(expr) != split:
            continue
        seen.add(expr)
        rec = _make_record(terms, rng, reflection_prob, column_steps, final_check_prob)
        rec.id = f"synthetic-{split}-{len(records)}"
        records.append(rec)
    return records


def trained_shape(source: dict) -> dict:
    """The problem shape a `data.source` of the generator sets (`num_terms`, `digits`), so the synthetic
    evaluation asks held-out problems of the kind the model was trained on; {} for any other source."""
    return {k: source[k] for k in ("num_terms", "digits") if k in source}

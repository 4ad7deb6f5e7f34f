"""Grade a pool of responses against their gold answers, so a data config can keep the correct ones
(Sky-T1's ablations start from correct responses) and `wrong_answers mode=natural` can draw the wrong
ones. A record's `answer` is its answer section already; math-verify decides, as in evaluation."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from reasoning_sft.errors import ConfigError
from reasoning_sft.data.answers import extract_answer, grade
from reasoning_sft.data.records import Record

KEEP = ("all", "correct", "wrong")


def grade_records(records: list[Record], field: str = "correct") -> tuple[list[Record], dict]:
    """Each record with a `metadata.gold_answer` gets `metadata[field]` (True / False) and
    `metadata.grading` (the outcome); a record that already carries a boolean `field` keeps it."""
    out, outcomes = [], Counter()
    for rec in records:
        if isinstance(rec.metadata.get(field), bool):
            outcomes["given" if rec.metadata[field] else "given_wrong"] += 1
            out.append(rec)
            continue
        gold = rec.metadata.get("gold_answer")
        if gold is None or isinstance(gold, list) or not str(gold).strip():
            outcomes["no_gold"] += 1
            out.append(rec)
            continue
        ok, outcome = grade(extract_answer(rec.answer), str(gold))
        outcomes[outcome] += 1
        out.append(replace(rec, metadata={**rec.metadata, field: ok, "grading": outcome}))
    correct = sum(r.metadata.get(field) is True for r in out)
    wrong = sum(r.metadata.get(field) is False for r in out)
    return out, {"graded": correct + wrong, "correct": correct, "graded_wrong": wrong,
                 "no_answer": outcomes["no_answer"], "no_gold": outcomes["no_gold"],
                 "outcomes": dict(sorted(outcomes.items()))}


def keep_by_grade(records: list[Record], keep: str, field: str = "correct") -> list[Record]:
    if keep not in KEEP:
        raise ConfigError(f"data.keep={keep!r}: expected one of {list(KEEP)}")
    if keep == "all":
        return records
    want = keep == "correct"
    return [r for r in records if r.metadata.get(field) is want]

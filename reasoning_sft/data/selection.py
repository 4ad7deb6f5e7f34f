"""The prepare stage's library: a training set from its source, as `python -m reasoning_sft.prepare` writes it
and `train` trains on it. load (data.source) -> grade when asked (data.keep, ablations that draw graded
responses) -> select (domains, trace length, length buckets, num_samples; seeded, smaller sets nest in
larger ones) -> ablate (ablation.transforms) -> a card that accounts for every record."""

from __future__ import annotations

import hashlib
from collections import Counter
from statistics import mean, median
from typing import Callable

from hydra.utils import instantiate

from reasoning_sft.data.ablations import apply_transforms, summarize
from reasoning_sft.data.correctness import grade_records, keep_by_grade
from reasoning_sft.data.records import Record, content_hash
from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.schema import DataConfig


def _priority(seed: int, rec: Record) -> str:
    # A fixed order per seed, independent of how many are taken: smaller subsets nest in larger ones.
    return hashlib.sha256(f"{seed}:{rec.id}".encode()).hexdigest()


def select_records(records: list[Record], data: DataConfig, seed: int,
                   count_tokens: Callable[[str], int], selected_by_ablation: bool = False) -> tuple[list[Record], dict]:
    """Seeded selection for sweeps; returns the records and what each step kept or dropped.
    `selected_by_ablation`: the ablation makes data.num_samples records itself (Long1K's combine
    joins several source problems per sample), so the pool is not cut to that number here."""
    counts: dict = {}
    ordered = sorted(records, key=lambda r: _priority(seed, r))
    domains = data.domains
    if domains:   # e.g. [math] or [code]: one part of a mixed set such as Sky-T1's 17K
        before = len(ordered)
        ordered = [r for r in ordered if r.domain in set(domains)]
        counts["dropped_domain"] = before - len(ordered)
        if not ordered:
            raise ConfigError(f"data.domains={list(domains)}: no record has one of these domains")
    lo, hi = data.min_trace_tokens, data.max_trace_tokens
    buckets = data.length_buckets
    if lo is not None or hi is not None or buckets:
        lengths = {r.id: count_tokens(r.thinking) for r in ordered}
    if lo is not None or hi is not None:
        before = len(ordered)
        ordered = [r for r in ordered if (lo is None or lengths[r.id] >= lo) and (hi is None or lengths[r.id] <= hi)]
        counts["dropped_trace_length"] = before - len(ordered)
    if buckets:
        per = data.samples_per_bucket
        if not per:
            raise ConfigError("data.samples_per_bucket: required with data.length_buckets")
        chosen, counts["buckets"] = [], {}
        for b_lo, b_hi in buckets:
            members = [r for r in ordered if b_lo <= lengths[r.id] < b_hi]
            if len(members) < per:
                raise ConfigError(f"data.length_buckets: bucket [{b_lo}, {b_hi}) tokens has {len(members)} "
                                  f"records, fewer than data.samples_per_bucket={per}")
            chosen += members[:per]
            counts["buckets"][f"{b_lo}-{b_hi}"] = per
        counts["dropped_outside_buckets_or_over_quota"] = len(ordered) - len(chosen)
        ordered = sorted(chosen, key=lambda r: _priority(seed, r))
    n = None if selected_by_ablation else data.num_samples
    if n is not None:
        if n > len(ordered):
            raise ConfigError(f"data.num_samples={n}: only {len(ordered)} records are left after selection")
        counts["dropped_over_num_samples"] = len(ordered) - n
        ordered = ordered[:n]
    return ordered, counts


def token_stats(lengths: list[int]) -> dict:
    s = sorted(lengths)
    return {"min": s[0], "median": median(s), "mean": round(mean(s), 1), "p90": s[int(0.9 * (len(s) - 1))],
            "max": s[-1], "total": sum(s)}


def token_counter(tokenizer) -> Callable[[str], int]:
    """count(text) -> tokens, memoized; `count.prefetch(texts)` measures many in one batch call."""
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return cache[text]

    def prefetch(texts) -> None:
        new = list(dict.fromkeys(t for t in texts if t not in cache))
        if new:
            for text, ids in zip(new, tokenizer(new, add_special_tokens=False)["input_ids"]):
                cache[text] = len(ids)
    count.prefetch = prefetch
    return count


def _base_set(records: list[Record], keep: str, card: dict, transforms: list) -> tuple[list[Record], list[Record]]:
    """Grade the pool against its gold answers when the data keeps by grade (`data.keep`) or a transform
    draws graded responses (its `needs_grades`); returns (base set, graded pool), counted in the card."""
    if keep == "all" and not any(getattr(t, "needs_grades", False) for t in transforms):
        return records, records
    pool, counts = grade_records(records)
    if keep != "all" and not counts["graded"]:
        raise DataError(f"data.keep={keep}: none of the {len(pool)} records has a gold answer to grade against "
                        "(map one: data.source.fields.gold_answer=COL, or data.source.gold_field=COL)")
    base = keep_by_grade(pool, keep)
    card["correctness"] = {"keep": keep, **counts, "kept": len(base)}
    return base, pool


def prepare_records(data: DataConfig, transforms: list, ablation: str, seed: int, tokenizer,
                    measure_traces: bool = True, records: list[Record] | None = None) -> tuple[list[Record], dict]:
    """Everything between the source and tokenization, with a card that accounts for every record:
    the `data` group's source and selection, then the ablation's built `transforms` (named `ablation`).
    measure_traces=False leaves the card's trace-token stats to the caller (training measures the
    traces while tokenizing them, instead of a second pass over every trace). `records`: the source,
    already loaded (the prepare stage loads it before its run dir: bad input makes none)."""
    count_tokens = token_counter(tokenizer)
    records = instantiate(data.source) if records is None else records
    card: dict = {"data": data.name, "records_loaded": len(records),
                  "skipped_by_loader": getattr(records, "skipped", {})}
    d = data
    records, pool = _base_set(records, d.keep, card, transforms)
    if d.min_trace_tokens is not None or d.max_trace_tokens is not None or d.length_buckets:
        count_tokens.prefetch(r.thinking for r in records)
    records, card["selection"] = select_records(records, d, seed, count_tokens,
                                                any(getattr(t, "makes_num_samples", False) for t in transforms))
    card["records_selected"] = len(records)
    if transforms:
        records, stages = apply_transforms(records, transforms, seed, count_tokens, pool)
        card["ablation"] = {"name": ablation, "stages": stages, "changes": summarize(records)}
        warn_if_unchanged(transforms, card["ablation"]["changes"])
    card["records_prepared"] = len(records)
    card["domains"] = dict(sorted(Counter(r.domain or "unlabelled" for r in records).items()))
    if measure_traces:
        count_tokens.prefetch(r.thinking for r in records)
        card["trace_tokens"] = token_stats([count_tokens(r.thinking) for r in records]) if records else {}
    card["content_hash"] = content_hash(records)
    return records, card


def warn_if_unchanged(transforms: list, changes: dict) -> None:
    """A treatment asked to change the data (rate > 0) that changed no sample makes a study compare
    identical data: said on the console in one line, with the counts, before anything trains."""
    import sys
    for t in transforms:
        c = changes.get(t.name)
        if c and getattr(t, "rate", 1) > 0 and c["samples_changed"] == 0:
            steps = f", {c['mean_steps']:.1f} steps per trace" if "mean_steps" in c else ""
            print(f"warning: ablation {t.name} changed 0 of {c['samples']} samples (rate {getattr(t, 'rate', '-')}"
                  f"{steps}): this arm trains on unchanged data", file=sys.stderr)


def tokenization_section(data: DataConfig, records: list[Record], tokenizer) -> dict:
    """What training does to prepared.jsonl at `data.max_seq_len` with `data.overflow`: prepared.jsonl
    holds the records before tokenization; this says which of them are dropped or cut, so it is the
    exact training set once these are applied (the train stage's card counts the same)."""
    from reasoning_sft.data.formatting import get_style, tokenize_records
    examples, counts = tokenize_records(records, tokenizer, get_style(data.format.thinking_style),
                                        data.max_seq_len, data.overflow, data.format.system_prompt)
    kept = {e["id"] for e in examples}
    return {"max_seq_len": data.max_seq_len, "overflow": data.overflow, **dict(counts),
            "sequence_tokens": token_stats([len(e["input_ids"]) for e in examples]) if examples else {},
            "not_trained_on": [r.id for r in records if r.id not in kept][:100],
            "note": "prepared.jsonl holds every prepared record; training drops the ones listed in "
                    "not_trained_on (first 100) and cuts the `truncated` ones at max_seq_len"}

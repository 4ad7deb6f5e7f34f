"""Long1K's long-trace synthesis (`combine`: problems joined) and the short-CoT baseline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from reasoning_sft.data.records import Record
from reasoning_sft.errors import DataError
from reasoning_sft.data.ablations.base import Context, _changed, _expect, _params, _refuse, _share, transform


# --- long traces (Long1K) and the short-CoT baseline ---------------------------------------------

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
# Long1K's linking: the questions numbered in one prompt, each trace introduced in turn, the answers
# given per problem. The paper describes the join and its README "different linking words"; the
# wording is ours (configurable: ablation.linking). A list gives variants: sample i uses variant
# i mod len, so consecutive samples differ and a dataset is the same on every run.
LINKING = {
    "question_header": ["Solve the following {n} problems.", "Answer each of these {n} questions.",
                        "Here are {n} problems; solve them all."],
    "question_item": "Problem {i}: {question}",
    "thinking_first": ["Let me start with the {ordinal} problem.", "First, the {ordinal} problem.",
                       "I'll begin with the {ordinal} problem."],
    "thinking_next": ["Now let me move on to the {ordinal} problem.", "Next, the {ordinal} problem.",
                      "Moving on to the {ordinal} problem.", "Let's now turn to the {ordinal} problem."],
    "answer_item": "For the {ordinal} problem: {answer}",
}


def _variants(value) -> list[str]:
    """A linking entry's wordings: one string, or a list of them (a config's ListConfig too)."""
    return [value] if isinstance(value, str) else list(value)


def _variant(value, index: int) -> str:
    options = _variants(value)
    return options[index % len(options)]


def _join(parts: list[Record], linking: dict, index: int) -> Record:
    link = {k: _variant(v, index) for k, v in {**LINKING, **(linking or {})}.items()}
    ordinal = [ORDINALS[i] if i < len(ORDINALS) else f"problem {i + 1}'s" for i in range(len(parts))]
    question = link["question_header"].format(n=len(parts)) + "\n\n" + "\n\n".join(
        link["question_item"].format(i=i + 1, question=p.question) for i, p in enumerate(parts))
    thinking = "\n\n".join(
        link["thinking_first" if i == 0 else "thinking_next"].format(ordinal=ordinal[i]) + "\n\n" + p.thinking
        for i, p in enumerate(parts))
    answer = "\n\n".join(link["answer_item"].format(ordinal=ordinal[i], answer=p.answer)
                          for i, p in enumerate(parts))
    return Record(id=f"combined-{index}", question=question, thinking=thinking, answer=answer,
                  source="combined", domain="+".join(sorted({p.domain for p in parts})),
                  metadata={"parts": [p.id for p in parts],
                            "gold_answer": [p.metadata.get("gold_answer") for p in parts]})


def _groups_by_length(records: list[Record], ctx: Context, wanted: int, target: int, tolerance: float,
                      max_parts: int, link_tokens: int = 0) -> tuple[list[list[Record]], dict]:
    """First-fit: each record (seeded order, each used at most once) goes to the first open group it
    fits in without passing target*(1+tolerance) tokens; a group closes at target*(1-tolerance/2). A
    record alone within the bounds is a group of one (the short end of the length study). Each part
    of a joined group also counts the `link_tokens` of its linking sentence."""
    lo, hi = target * (1 - tolerance / 2), target * (1 + tolerance)   # closing at 1 - tol/2 centres the mean
    order = list(records)
    ctx.rng.shuffle(order)
    open_groups: list[tuple[list[Record], int]] = []
    closed: list[list[Record]] = []
    too_long = 0
    for rec in order:
        if len(closed) == wanted:
            break
        n = ctx.count_tokens(rec.thinking)
        if n > hi:
            too_long += 1
            continue
        for g, (members, total) in enumerate(open_groups):
            joined = total + n + link_tokens * (2 if len(members) == 1 else 1)
            if joined <= hi and len(members) < max_parts:
                members.append(rec)
                open_groups[g] = (members, joined)
                break
        else:
            open_groups.append(([rec], n))
            g = len(open_groups) - 1
        members, total = open_groups[g]
        if total >= lo:
            closed.append(members)
            open_groups.pop(g)
    return closed, {"too_long_for_target": too_long, "left_in_open_groups": sum(len(m) for m, _ in open_groups)}


def combine(records: list[Record], ctx: Context, k: int = 2, num_samples: int | None = None,
            target_tokens: int | None = None, tolerance: float = 0.25, max_parts: int = 8,
            long_share: float = 0.0, long_source: list[Record] | None = None, long_min_tokens: int = 0,
            linking: dict | None = None) -> list[Record]:
    """Long1K: join problems (pairs by default) into one prompt, and their traces and answers into one
    long trace; every source problem is used at most once in the dataset.

    The output holds `num_samples` records (null: as many groups as the pool makes). A `long_share`
    of them are instead long single-problem samples from `long_source` (Long1K mixes in s1.1 problems)
    whose thinking has at least `long_min_tokens` tokens. With `target_tokens`, groups are built to
    about that many thinking tokens (within `tolerance`; one to `max_parts` problems each) instead of
    `k` per group: one length level of the paper's log-linear study."""
    capacity = len(records) // k if target_tokens is None else None
    total = num_samples if num_samples is not None else capacity
    n_long = int(round(long_share * total))
    n_joined = total - n_long
    stats: dict = {"pool": len(records)}
    if target_tokens is None:
        if n_joined > len(records) // k:
            raise DataError(f"ablation combine: {n_joined} samples of k={k} problems need {n_joined * k} "
                             f"distinct source problems; the pool holds {len(records)} (each is used once)")
        order = list(records)
        ctx.rng.shuffle(order)
        groups = [order[i * k:(i + 1) * k] for i in range(n_joined)]
    else:
        link = {**LINKING, **(linking or {})}
        link_tokens = max(ctx.count_tokens(v.format(ordinal="second") + "\n\n") for v in _variants(link["thinking_next"]))
        groups, more = _groups_by_length(records, ctx, n_joined, target_tokens, tolerance, max_parts, link_tokens)
        stats.update(more)
        if len(groups) < n_joined:
            raise DataError(f"ablation combine target_tokens={target_tokens}: the pool of {len(records)} "
                             f"problems makes only {len(groups)} samples of about that length, "
                             f"{n_joined} wanted ({more})")
    out = []
    for i, parts in enumerate(groups):
        rec = parts[0] if len(parts) == 1 else _join(parts, linking, i)
        out.append(_changed(rec, {"transform": "combine", "parts": len(parts),
                                  "tokens": ctx.count_tokens(rec.thinking), **stats}))
    if n_long:
        used = {r.question for g in groups for r in g}
        eligible = [r for r in long_source if r.question not in used
                    and ctx.count_tokens(r.thinking) >= long_min_tokens]
        if len(eligible) < n_long:
            raise DataError(f"ablation combine: {n_long} long samples wanted, {len(eligible)} in long_source "
                             f"have at least long_min_tokens={long_min_tokens} thinking tokens")
        for rec in ctx.rng.sample(eligible, n_long):
            out.append(_changed(rec, {"transform": "combine", "parts": 1, "long_mix": True,
                                      "tokens": ctx.count_tokens(rec.thinking), **stats}))
    ctx.rng.shuffle(out)
    return out


@transform
@dataclass(frozen=True)
class Combine:
    name: ClassVar[str] = "combine"
    makes_num_samples: ClassVar[bool] = True   # the pool is not cut to data.num_samples before joining
    k: int = 2
    num_samples: Optional[int] = None
    target_tokens: Optional[int] = None
    tolerance: float = 0.25
    max_parts: int = 8
    long_share: float = 0.0
    long_source: Any = None       # records (a loader node in the config)
    long_min_tokens: int = 0
    linking: Any = None           # overrides of LINKING

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, isinstance(self.max_parts, int) and self.max_parts >= 1, "max_parts", self.max_parts, "an integer >= 1")
        _expect(errs, isinstance(self.k, int) and 1 <= self.k <= self.max_parts, "k", self.k,
                f"an integer in 1..ablation.max_parts ({self.max_parts})")
        _share(errs, "long_share", self.long_share)
        _expect(errs, self.tolerance > 0, "tolerance", self.tolerance, "a number > 0")
        _expect(errs, self.num_samples is None or self.num_samples >= 1, "data.num_samples", self.num_samples,
                "null or an integer >= 1")
        _expect(errs, self.target_tokens is None or self.target_tokens >= 1, "target_tokens", self.target_tokens,
                "null or an integer >= 1")
        _expect(errs, self.target_tokens is None or self.num_samples is not None, "data.num_samples", self.num_samples,
                "an integer with ablation.target_tokens: it says how many samples to make")
        _expect(errs, self.long_share == 0 or bool(self.long_source), "long_source", self.long_source,
                "records (s1.1's long problems) with ablation.long_share > 0")
        unknown = set(self.linking or {}) - set(LINKING)
        _expect(errs, not unknown, "linking", dict(self.linking or {}), f"keys among {sorted(LINKING)}")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return combine(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        return {"parts": dict(sorted(Counter(c["parts"] for c in changes).items())),
                "long_mix": sum(bool(c.get("long_mix")) for c in changes)}


def short_cot(records: list[Record], ctx: Context, field: str = "solution",
              on_missing: str = "raise") -> list[Record]:
    """The papers' short-CoT baseline: the long trace replaced by the short reference solution."""
    out = []
    for rec in records:
        solution = rec.metadata.get(field)
        if not isinstance(solution, str) or not solution.strip():
            if on_missing == "skip":
                continue
            raise DataError(f"ablation short_cot: record {rec.id!r} has no metadata[{field!r}] "
                             "(use ablation.on_missing=skip to drop such records, counted)")
        out.append(_changed(rec, {"transform": "short_cot"}, thinking=solution.strip()))
    return out


@transform
@dataclass(frozen=True)
class ShortCot:
    name: ClassVar[str] = "short_cot"
    field: str = "solution"
    on_missing: str = "raise"     # raise | skip (counted in the data card)

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.on_missing in ("raise", "skip"), "on_missing", self.on_missing, "'raise' or 'skip'")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return short_cot(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        return {}



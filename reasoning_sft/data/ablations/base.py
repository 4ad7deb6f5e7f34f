"""The shared base of the ablations: the plugin registry, parameter checks, the per-record change log,
applying the configured transforms in order and the data card's summary of what they changed."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from statistics import mean
from typing import Any, Callable

from reasoning_sft.data.records import Record
from reasoning_sft.errors import ConfigError
from reasoning_sft.registry import ABLATIONS

def transform(cls: type) -> type:
    """Register a plugin class by its `name` (registry.ABLATIONS: summarize asks each for its card figures)."""
    return ABLATIONS.add(cls.name, cls)


def _params(plugin) -> dict:
    return {f.name: getattr(plugin, f.name) for f in fields(plugin)}


def _expect(errs: list[str], ok: bool, key: str, value: Any, expected: str) -> None:
    """A plugin's parameter check: the key as the config sets it (conf/ablation/*.yaml: `ablation.<key>`)."""
    if not ok:
        errs.append(f"{key if '.' in key else 'ablation.' + key}={value!r}: expected {expected}")


def _share(errs: list[str], key: str, value: Any) -> None:
    _expect(errs, isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1, key, value,
            "a number in [0, 1]")


def _refuse(errs: list[str]) -> None:
    """All of a plugin's problems in one ConfigError, one per line (the validation lists each)."""
    if errs:
        raise ConfigError("\n".join(errs))


@dataclass
class Context:
    rng: random.Random
    count_tokens: Callable[[str], int] = field(default=lambda text: len(text.split()))
    pool: list[Record] | None = None   # every loaded record, graded, before data.keep chose the base set


def _changed(rec: Record, change: dict, **fields) -> Record:
    change.update(chars_before=len(rec.thinking), chars_after=len(fields.get("thinking", rec.thinking)))
    meta = dict(rec.metadata)
    meta["ablation"] = list(meta.get("ablation", [])) + [change]
    return replace(rec, metadata=meta, **fields)



# --- applying and reporting -----------------------------------------------------------------------

def apply_transforms(records: list[Record], transforms: list, seed: int,
                     count_tokens: Callable[[str], int] | None = None,
                     pool: list[Record] | None = None) -> tuple[list[Record], list[dict]]:
    """Apply the instantiated transforms in order; returns the records and a count per stage.
    `pool`: every loaded record (graded), for treatments that draw from beyond the base set."""
    stages = []
    for i, fn in enumerate(transforms):
        rng = random.Random(f"{seed}-{i}")
        ctx = Context(rng, pool=pool) if count_tokens is None else Context(rng, count_tokens, pool)
        name = fn.name
        before = len(records)
        records = fn(records, ctx)
        empty = [r.id for r in records if not r.thinking.strip()]
        if empty:
            raise ValueError(f"ablation {name} produced empty traces (records {empty[:3]}): a bug, please report")
        stages.append({"transform": name, "records_in": before, "records_out": len(records)})
    return records, stages


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarize(records: list[Record]) -> dict:
    """Aggregate per-sample changes by transform: how many samples, how many changed, the means, and
    each treatment's own figures (its plugin's `card`: digit corruption reports what SkyThought's script does)."""
    by_transform: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        for change in rec.metadata.get("ablation", []):
            by_transform[change["transform"]].append(change)
    out = {}
    for name, changes in by_transform.items():
        numeric = {k for c in changes for k, v in c.items() if isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        agg = {"samples": len(changes),
               "samples_changed": sum(bool(c["chars_before"] != c["chars_after"] or c.get("changed", False)
                                           or c.get("replaced", 0) > 0 or c.get("moved", 0) > 0
                                           or c.get("removed", 0) > 0) for c in changes)}
        agg.update({f"mean_{k}": round(mean(c.get(k, 0) for c in changes), 3) for k in sorted(numeric)})
        total = lambda key: sum(c.get(key, 0) for c in changes)   # noqa: E731
        if name in ABLATIONS:
            agg.update(ABLATIONS[name].card(changes, total))   # each treatment's own figures
        splitters = Counter(c["splitter"] for c in changes if "splitter" in c)
        if splitters:
            agg["splitter"] = dict(sorted(splitters.items()))
        out[name] = agg
    return out

"""s1's curation as a library (the curate stage runs it): quality -> exact dedup -> decontamination ->
difficulty -> diversity sampling. Each stage can be switched off, is counted in the card, and every
removed record is listed with its reason."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from reasoning_sft.data.answers import extract_answer, is_equivalent, last_boxed
from reasoning_sft.data.domains import keyword_domain
from reasoning_sft.data.records import Record, content_hash
from reasoning_sft.errors import ConfigError
from reasoning_sft.registry import CURATION_STAGES

# --- quality --------------------------------------------------------------------------------------

API_ERROR = re.compile(r"(api error|rate limit exceeded|internal server error|error code: \d{3}|"
                       r"request timed out|I'm sorry, but I can(?:no|')t (?:help|assist))", re.I)
ASCII_ART_LINE = re.compile(r"^[\s\-+|/\\_=*#.:<>^v]{6,}$")
LEADING_NUMBER = re.compile(r"^\s*(?:problem\s*)?\d{1,3}\s*[.)]\s+\S|^\s*problem\s+\d+\s*[:.]", re.I)
ENUMERATION = re.compile(r"(?m)^\s*(\d{1,2})[.)]\s")


def quality_issue(rec: Record, allow_asy_sources: list[str]) -> str | None:
    """The first quality problem of a record, or None."""
    text = f"{rec.question}\n{rec.thinking}\n{rec.answer}"
    if not rec.question.strip() or not rec.answer.strip():
        return "missing field"
    if API_ERROR.search(text):
        return "API error text"
    if "![" in rec.question or "<img" in rec.question:
        return "image reference"
    if "[asy]" in rec.question and not any(s.lower() in rec.source.lower() for s in allow_asy_sources):
        return "[asy] diagram"
    if sum(bool(ASCII_ART_LINE.match(line)) for line in rec.question.splitlines()) >= 3:
        return "ASCII-art diagram"
    if LEADING_NUMBER.match(rec.question):
        return "question-numbering artefact"
    numbers = [int(n) for n in ENUMERATION.findall(rec.question)]
    if len(numbers) >= 2 and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return "inconsistent numbering"
    return None


S1_BOLD_WITH_DIGIT = re.compile(r"\*\*(?=.*\d)[^\s\]]*\*\*")


def s1_quality_issue(rec: Record) -> str | None:
    """s1's released quality rules (data/filter.ipynb, the cell after the NaN filter), in its order:
    `[asy]` (kept when the source holds "AIME"), `![Image]`, `p1.` .. `p999.`, a bold span holding a digit."""
    q = rec.question
    if "[asy]" in q:
        return None if "AIME" in rec.source else "[asy] diagram"
    if "![Image]" in q:
        return "image reference"
    if any(f"p{i}." in q for i in range(1, 1000)):
        return "question-numbering artefact (p<i>.)"
    if S1_BOLD_WITH_DIGIT.search(q):
        return "bold span with a digit"
    return None


# --- decontamination ------------------------------------------------------------------------------

def s1_ngrams(text: str, n: int) -> set[str]:
    """s1's decontaminate_util.py: lowercased, whitespace collapsed, word n-grams."""
    words = " ".join(text.lower().strip().split()).split()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}

def normalize_words(text: str) -> list[str]:
    """Lowercase, punctuation spaced apart, whitespace collapsed: '$(3,7)$.' and '$(3, 7)$ .' agree."""
    return re.sub(r"\s*([.,;:!?()\[\]{}$=+\-*/^_\\])\s*", r" \1 ", text.lower()).split()


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize_words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass
class EvalIndex:
    """n-grams of the evaluation items, with how many items each occurs in."""
    names: list[str]
    grams: list[set]
    where: dict          # n-gram -> indices of the items holding it

    @classmethod
    def build(cls, items: list[tuple[str, str]], n: int) -> "EvalIndex":
        names, grams, where = [], [], defaultdict(list)
        for name, text in items:
            g = ngrams(text, n)
            for x in g:
                where[x].append(len(names))
            names.append(name)
            grams.append(g)
        return cls(names, grams, dict(where))

    def matches(self, text: str, n: int, max_item_frequency: int, min_shared: int,
                min_overlap: float) -> list[dict]:
        """Eval items this text overlaps. Boilerplate ("relatively prime positive integers. Find
        m+n") recurs across many items, so only n-grams found in at most `max_item_frequency` items
        count; a match needs `min_shared` of them and `min_overlap` of the shorter side's n-grams."""
        g = ngrams(text, n)
        shared: Counter = Counter()
        for x in g:
            items = self.where.get(x, ())
            if 0 < len(items) <= max_item_frequency:
                for j in items:
                    shared[j] += 1
        out = []
        for j, count in shared.items():
            overlap = count / max(1, min(len(g), len(self.grams[j])))
            if count >= min_shared and overlap >= min_overlap:
                out.append({"eval_item": self.names[j], "shared_ngrams": count, "overlap": round(overlap, 3)})
        # best match first; ties by shared n-grams, then the eval item's name: the n-grams are a set, and
        # their order (string hashing, per process) must not decide which match a card names first
        return sorted(out, key=lambda m: (-m["overlap"], -m["shared_ngrams"], m["eval_item"]))


def load_eval_items(data_dir: str, sets: dict) -> list[tuple[str, str]]:
    """`sets`: file name -> the field holding the problem text. Names are `file:line`."""
    items = []
    for name, field in sets.items():
        path = Path(data_dir) / name
        if not path.is_file():
            raise ConfigError(f"curation.decontamination.eval_sets: {path} does not exist "
                              "(set eval.data_dir to the folder of the evaluation sets)")
        for lineno, line in enumerate(open(path, encoding="utf-8"), 1):
            if line.strip():
                row = json.loads(line)
                if field not in row:
                    raise ConfigError(f"{path}:{lineno}: no field {field!r} (curation.decontamination.eval_sets)")
                items.append((f"{name}:{lineno}", row[field]))
    return items


def load_gpqa_questions(path: str) -> list[tuple[str, str]]:
    """GPQA-Diamond's questions from the user's copy (`gpqa_diamond.csv` as released, column
    `Question`; or a jsonl with `Question` / `question`), named `gpqa_diamond:row`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"eval.gpqa_path={path}: no such file (your copy of gpqa_diamond.csv)")
    if p.suffix == ".csv":
        import csv
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in open(p, encoding="utf-8") if line.strip()]
    items = []
    for i, row in enumerate(rows, 1):
        text = row.get("Question") or row.get("question")
        if not text:
            raise ConfigError(f"{path}:{i}: no 'Question' column (eval.gpqa_path: GPQA-Diamond as released)")
        items.append((f"gpqa_diamond:{i}", text))
    return items


# --- diversity: the domains (reasoning_sft/data/domains.py), then sampling within them ----------------


def _included_first(rec: Record, inc, count_tokens) -> bool:
    """s1's filter.ipynb (the selection cell): the Gemini trace correct (`require_field`), and the source
    exactly one of `sources` (match=exact; `substring` was this project's looser reading), or holding a
    `long_sources` key with a trace over its token count."""
    if inc.get("require_field") and rec.metadata.get(inc.get("require_field")) is not True:
        return False
    exact = (inc.get("match") or "exact") == "exact"
    if any((rec.source == s) if exact else (s.lower() in rec.source.lower()) for s in inc.get("sources") or []):
        return True
    return any(s in rec.source and count_tokens(rec.thinking) > n for s, n in (inc.get("long_sources") or {}).items())


def diversity_sample(records: list[Record], num_samples: int, rng: random.Random, count_tokens,
                     domain_weights: dict | None = None, classify=keyword_domain,
                     include_first=None) -> tuple[list[Record], dict]:
    """s1's Algorithm 1, step for step: S starts with the records `include_first` names (s1: the
    correct AIME and GPQA questions, and MATH questions whose trace is over 5,600 tokens); then, until
    |S| = num_samples: draw a domain uniformly (or by `domain_weights`), rank its records by trace
    length (longest first), draw one with probability proportional to 2^-rank, move it to S, and
    drop the domain once it is empty. A record without a domain gets one from `classify`."""
    records = [rec if rec.domain else replace(rec, domain=classify(rec)) for rec in records]   # kept in curated.jsonl
    first = [r for r in records if include_first is not None and _included_first(r, include_first, count_tokens)]
    if len(first) > num_samples:
        raise ConfigError(f"curation.diversity.include_first selects {len(first)} records, more than "
                          f"curation.diversity.num_samples={num_samples}")
    chosen, taken = list(first), {r.id for r in first}
    by_domain: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        if rec.id not in taken:
            by_domain[rec.domain].append(rec)
    for recs in by_domain.values():
        recs.sort(key=lambda r: -count_tokens(r.thinking))
    while len(chosen) < num_samples and by_domain:
        domains = sorted(by_domain)
        weights = [float((domain_weights or {}).get(d, 1.0)) for d in domains]
        d = rng.choices(domains, weights)[0]
        pool = by_domain[d]
        i = rng.choices(range(len(pool)), [2.0 ** -rank for rank in range(len(pool))])[0]
        chosen.append(pool.pop(i))
        if not pool:
            del by_domain[d]
    figures = {"included_first": len(first), "sampled": len(chosen) - len(first)}
    field = include_first.get("require_field") if include_first is not None else None
    if field:   # a pool without the column includes nothing first: say how many lacked it
        figures["include_first_field_missing"] = sum(field not in r.metadata for r in records)
    return chosen, figures


# --- the stages as plugins --------------------------------------------------------------------------
# `curation` in conf/curate.yaml is an ordered set of stages, each a `_target_` node naming one of the
# classes below with its parameters (their defaults live in that YAML alone). Each class checks its
# parameters when it is built (before any run dir), and `stage(records, ctx)` returns the records it
# keeps, why it removed each other one, and its own figures for the data card. Each is registered under
# its node's name in conf/curate.yaml (registry.CURATION_STAGES). A new stage is a registered class here
# and a node in the YAML.

@dataclass
class CurationContext:
    seed: int
    count_tokens: Callable[[str], int]
    # solve(records, model_dir, max_new_tokens, batch_size, data_parallel_size): each record with
    # metadata['solver:<dir>'], the solver model's answer (the curate stage passes its generation engine)
    solve: Callable | None = None


Outcome = tuple[list[Record], dict[str, dict], dict]   # kept, {removed id: why}, the card's figures


def _expect(errs: list[str], ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        errs.append(f"curation.{key}={value!r}: expected {expected}")


def _refuse(errs: list[str]) -> None:
    if errs:
        raise ConfigError("\n".join(errs))


def _without(records: list[Record], reasons: dict) -> list[Record]:
    return [r for r in records if r.id not in reasons]


@CURATION_STAGES.register("quality")
@dataclass(frozen=True)
class QualityFilter:
    """rules=s1: s1's released rules (s1_quality_issue); rules=ours: ours (quality_issue: also API-error
    text, ASCII art, numbering artefacts). Both are counted on the same records for the card."""
    enabled: bool
    allow_asy_sources: Any           # rules=ours: keep [asy] diagrams for these sources (s1 kept AIME's)
    rules: str = "s1"

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.rules in ("s1", "ours"), "quality.rules", self.rules, "s1 or ours")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: CurationContext) -> Outcome:
        found = {"s1": {}, "ours": {}}
        for rec in records:
            for rules, issue in (("s1", s1_quality_issue(rec)), ("ours", quality_issue(rec, list(self.allow_asy_sources)))):
                if issue:
                    found[rules][rec.id] = {"reason": issue}
        reasons = found[self.rules]
        return _without(records, reasons), reasons, {
            "quality_rules": self.rules, "quality_flagged": {k: len(v) for k, v in found.items()}}


@CURATION_STAGES.register("dedup")
@dataclass(frozen=True)
class ExactDedup:
    enabled: bool

    def __call__(self, records: list[Record], ctx: CurationContext) -> Outcome:
        seen, reasons = {}, {}
        for rec in records:
            key = " ".join(normalize_words(rec.question))
            if key in seen:
                reasons[rec.id] = {"reason": "exact duplicate", "duplicate_of": seen[key]}
            else:
                seen[key] = rec.id
        return _without(records, reasons), reasons, {}


@CURATION_STAGES.register("decontamination")
@dataclass(frozen=True)
class Decontamination:
    """method=s1: s1's collect_data.py:387-400, a question sharing any one word n-gram with an
    evaluation item is dropped; method=overlap: ours, a match needs `min_shared_ngrams` n-grams found
    in at most `max_item_frequency` items and `min_overlap` of the shorter text (boilerplate such as
    "relatively prime positive integers. Find m+n" alone does not match). Both are counted for the card."""
    enabled: bool
    ngram: int
    max_item_frequency: int          # an n-gram in more eval items than this is boilerplate
    min_shared_ngrams: int
    min_overlap: float               # of the shorter text's n-grams
    eval_sets: Any                   # file in data_dir -> field with the problem text
    data_dir: str
    gpqa_path: Optional[str] = None  # the user's gpqa_diamond.csv: its questions join the sets
    method: str = "s1"

    def __post_init__(self):
        errs: list[str] = []
        for k in ("ngram", "max_item_frequency", "min_shared_ngrams"):
            _expect(errs, getattr(self, k) >= 1, f"decontamination.{k}", getattr(self, k), "an integer >= 1")
        _expect(errs, 0 <= self.min_overlap <= 1, "decontamination.min_overlap", self.min_overlap, "a number in [0, 1]")
        _expect(errs, self.method in ("s1", "overlap"), "decontamination.method", self.method, "s1 or overlap")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: CurationContext) -> Outcome:
        items = load_eval_items(self.data_dir, dict(self.eval_sets))
        if self.gpqa_path:
            items += load_gpqa_questions(self.gpqa_path)
        index = EvalIndex.build(items, self.ngram)
        s1_lookup: dict[str, str] = {}
        for name, text in items:
            for g in s1_ngrams(text, self.ngram):
                s1_lookup.setdefault(g, name)
        found = {"s1": {}, "overlap": {}}
        for rec in records:
            shared = [g for g in s1_ngrams(rec.question, self.ngram) if g in s1_lookup]
            if shared:
                found["s1"][rec.id] = {"reason": "contamination", "matches": [
                    {"eval_item": s1_lookup[shared[0]], "shared_ngrams": len(shared), "first": shared[0]}]}
            hits = index.matches(rec.question, self.ngram, self.max_item_frequency, self.min_shared_ngrams,
                                 self.min_overlap)
            if hits:
                found["overlap"][rec.id] = {"reason": "contamination", "matches": hits}
        reasons = found[self.method]
        return _without(records, reasons), reasons, {
            "decontamination_sets": sorted({name.split(":")[0] for name, _ in items}),
            "decontamination_method": self.method,
            "decontamination_flagged": {k: len(v) for k, v in found.items()}}


@CURATION_STAGES.register("difficulty")
@dataclass(frozen=True)
class DifficultyFilter:
    """s1: drop what a solver model solved (boolean columns, solver answers graded against the gold
    answer, or saved solver models run here), and traces shorter than `min_trace_tokens`."""
    enabled: bool
    solved_by_fields: Any            # boolean columns: drop what a solver got right
    solver_answer_fields: Any        # columns of solver answers, graded against gold_answer (math-verify)
    solver_models: Any               # saved model dirs: answer every question, drop what they solve
    solver_max_new_tokens: int
    solver_batch_size: int
    min_trace_tokens: Optional[int] = None
    solver_data_parallel_size: int = 1   # solver model replicas, each its own process (evaluation/replicas.py)

    def __post_init__(self):
        """Without a solver signal the stage would drop nothing and the pool would pass as 'hard'."""
        if not (isinstance(self.solver_data_parallel_size, int) and self.solver_data_parallel_size >= 1):
            raise ConfigError(f"curation.difficulty.solver_data_parallel_size: expected an integer >= 1, got "
                              f"{self.solver_data_parallel_size!r}")
        if self.enabled and not (list(self.solved_by_fields) + list(self.solver_answer_fields)
                                 + list(self.solver_models)):
            raise ConfigError("curation.difficulty: enabled, but nothing measures difficulty: set "
                              "curation.difficulty.solved_by_fields=[COL] (boolean columns), solver_answer_fields=[COL] "
                              "or solver_models=[DIR] (graded against the gold answer), or "
                              "curation.difficulty.enabled=false")

    def check_records(self, records: list[Record]) -> None:
        """Before any work: graded signals need a gold answer to grade against."""
        if self.enabled and (list(self.solver_answer_fields) + list(self.solver_models)) \
                and not any(r.metadata.get("gold_answer") is not None for r in records):
            raise ConfigError("curation.difficulty.solver_answer_fields / solver_models grade against a gold answer, "
                              "and no record has one: map it (data.source.fields.gold_answer=COL) or use "
                              "solved_by_fields")

    def __call__(self, records: list[Record], ctx: CurationContext) -> Outcome:
        fields, reasons = list(self.solved_by_fields), {}
        answer_fields = list(self.solver_answer_fields)
        for path in self.solver_models:   # run the evaluation engine on the pool
            records = ctx.solve(records, path, self.solver_max_new_tokens, self.solver_batch_size,
                                self.solver_data_parallel_size)
            answer_fields.append(f"solver:{path}")
        for rec in records:
            solved = [f for f in fields if rec.metadata.get(f) is True]
            gold = rec.metadata.get("gold_answer")
            gold = (last_boxed(str(gold)) or gold) if gold is not None else None   # a worked solution: its boxed answer
            solved += [f for f in answer_fields if gold is not None and rec.metadata.get(f) is not None
                       and is_equivalent(extract_answer(str(rec.metadata[f])) or str(rec.metadata[f]), str(gold))]
            if solved:
                reasons[rec.id] = {"reason": "solved by a solver model", "solved_by": solved}
            elif self.min_trace_tokens and ctx.count_tokens(rec.thinking) < self.min_trace_tokens:
                reasons[rec.id] = {"reason": "trace shorter than curation.difficulty.min_trace_tokens"}
        return _without(records, reasons), reasons, {}


@CURATION_STAGES.register("diversity")
@dataclass(frozen=True)
class DiversitySample:
    """s1's Algorithm 1 (diversity_sample)."""
    enabled: bool
    num_samples: int
    include_first: Any               # put in S before sampling: sources, long_sources, require_field
    domain_weights: Any              # null: domains drawn uniformly
    classifier: Any                  # rec -> domain, for records without one

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.num_samples >= 1, "diversity.num_samples", self.num_samples, "an integer >= 1")
        _expect(errs, all(float(w) > 0 for w in (self.domain_weights or {}).values()), "diversity.domain_weights",
                self.domain_weights, "positive weights")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: CurationContext) -> Outcome:
        keep, figures = diversity_sample(records, self.num_samples, random.Random(ctx.seed), ctx.count_tokens,
                                         dict(self.domain_weights) if self.domain_weights else None,
                                         self.classifier, self.include_first)
        kept_ids = {r.id for r in keep}
        return keep, {r.id: {"reason": "not sampled"} for r in records if r.id not in kept_ids}, {"diversity": figures}


def curate(records: list[Record], stages: dict[str, Callable], ctx: CurationContext) -> tuple[list[Record], dict, list[dict]]:
    """The enabled stages in their order; the card counts what each kept and removed, and why."""
    card: dict = {"records_loaded": len(records), "stages": []}
    removed: list[dict] = []
    current = records
    for name, stage in stages.items():
        if not stage.enabled:
            continue
        keep, reasons, figures = stage(current, ctx)
        card["stages"].append({"stage": name, "in": len(current), "out": len(keep),
                               "removed_by_reason": dict(Counter(r["reason"] for r in reasons.values()))})
        removed.extend({"id": rid, "stage": name, **info} for rid, info in reasons.items())
        card.update(figures)
        current = keep
    card["records_curated"] = len(current)
    card["domains"] = dict(Counter(r.domain or "unclassified" for r in current).most_common())
    card["content_hash"] = content_hash(current)
    return current, card, removed

"""s1's curation defaults as its released code runs them (data/collect_data.py, data/filter.ipynb), on the
1,000 real s1K questions; this project's stricter-to-match filters stay as named variants, counted beside."""

from __future__ import annotations

import json
import random

import pytest

from reasoning_sft.data.curation import (CurationContext, Decontamination, QualityFilter, diversity_sample,
                                         s1_ngrams, s1_quality_issue)
from reasoning_sft.data.records import Record


@pytest.fixture(scope="module")
def s1k(shared_data):
    rows = [json.loads(line) for line in open(shared_data / "s1k_questions_no_traces.jsonl")]
    return [Record(id=str(r["id"]), question=r["question"], thinking="", answer=r["solution"] or "-", source="s1K",
                   domain="math", metadata={}) for r in rows]


def test_decontamination_drops_any_shared_8gram_as_s1_and_counts_ours_beside(s1k, shared_data):
    ctx = CurationContext(seed=0, count_tokens=len)
    stage = Decontamination(enabled=True, ngram=8, max_item_frequency=2, min_shared_ngrams=10, min_overlap=0.4,
                            eval_sets={"math500.jsonl": "problem"}, data_dir=str(shared_data))
    kept, removed, figures = stage(s1k, ctx)
    # s1's rule flags 79 of the 1,000 s1K questions against MATH-500; ours (>= 10 rare n-grams, >= 40%) 4
    assert figures["decontamination_flagged"] == {"s1": 79, "overlap": 4} and len(removed) == 79
    assert len(kept) == 921 and figures["decontamination_method"] == "s1"
    first = next(iter(removed.values()))["matches"][0]
    assert first["eval_item"].startswith("math500.jsonl:") and len(first["first"].split()) == 8
    ours = Decontamination(enabled=True, ngram=8, max_item_frequency=2, min_shared_ngrams=10, min_overlap=0.4,
                           eval_sets={"math500.jsonl": "problem"}, data_dir=str(shared_data), method="overlap")
    assert len(ours(s1k, ctx)[1]) == 4
    assert s1_ngrams("A  b\nC d", 2) == {"a b", "b c", "c d"}       # lowercased, whitespace collapsed


def test_quality_rules_are_s1s_and_ours_are_counted(s1k):
    _, removed, figures = QualityFilter(enabled=True, allow_asy_sources=["aime"])(s1k, CurationContext(0, len))
    assert figures["quality_flagged"] == {"s1": 0, "ours": 7} and not removed     # s1K passed s1's own rules
    rec = s1k[0]
    cases = {"Find x. [asy]draw((0,0));[/asy]": ("s1K", "[asy] diagram"),
             "Find x. [asy]draw((0,0));[/asy] ": ("qq8933/AIME_1983_2024", None),      # AIME keeps its diagrams
             "See ![Image](a.png). Find x.": ("s1K", "image reference"),
             "p1. Find x. p2. Find y.": ("s1K", "question-numbering artefact (p<i>.)"),
             "**(3)** Find x.": ("s1K", "bold span with a digit"),
             "**Problem 3** Find x.": ("s1K", None),       # a space inside the bold: not matched
             "**Note** find x = 3.": ("s1K", "bold span with a digit"),     # the lookahead reads the whole line
             "Find **x**.": ("s1K", None)}
    for question, (source, issue) in cases.items():
        assert s1_quality_issue(Record(rec.id, question, "", "a", source, "math", {})) == issue, question


def test_include_first_needs_a_correct_trace_and_the_exact_source():
    inc = {"sources": ["Idavidrein/gpqa", "qq8933/AIME_1983_2024"], "match": "exact",
           "long_sources": {"qfq/openaimath": 5}, "require_field": "isgeminicorrect"}
    def rec(i, source, correct, thinking="t"):
        return Record(str(i), f"q{i}", thinking, "a", source, "math", {"isgeminicorrect": correct})
    pool = [rec(0, "qq8933/AIME_1983_2024", True), rec(1, "qq8933/AIME_1983_2024", False),
            rec(2, "AI-MO/NuminaMath-CoT/amc_aime", True), rec(3, "Idavidrein/gpqa", True),
            rec(4, "qfq/openaimath/Algebra", True, "x" * 10), rec(5, "qfq/openaimath/Algebra", True, "x" * 3)]
    chosen, figures = diversity_sample(pool, 3, random.Random(0), len, include_first=inc)
    assert [r.id for r in chosen] == ["0", "3", "4"] and figures["included_first"] == 3
    loose = {**inc, "sources": ["aime"], "match": "substring"}     # the looser reading catches amc_aime
    chosen, _ = diversity_sample(pool, 3, random.Random(0), len, include_first=loose)
    assert {"0", "2"} <= {r.id for r in chosen[:3]}
    bare = [Record("9", "q", "t", "a", "Idavidrein/gpqa", "math", {})]
    _, figures = diversity_sample(bare, 1, random.Random(0), len, include_first=inc)
    assert figures["included_first"] == 0 and figures["include_first_field_missing"] == 1

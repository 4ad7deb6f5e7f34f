"""The `qwen_math` grading profile against the harness that scored the Sky-T1 paper's tables: its own
released outputs (tests/fixtures/README.md), re-graded, give its own prediction and score for every
sample; and the profile as users run it (the grade stage, an evaluation's summary)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from conftest import ROOT

RELEASED = ROOT / "tests" / "fixtures" / "skythought_corrupt_icml_outputs.jsonl.gz"


def _released(data_names: tuple[str, ...]) -> list[dict]:
    with gzip.open(RELEASED, "rt", encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["data_name"] in data_names]


def _regrade(rows: list[dict]) -> tuple[list[str], list[bool]]:
    """(the samples where ours differs from the harness's own prediction or score, our scores)."""
    from reasoning_sft.evaluation.qwen_math import _equal, extract, gold
    differ, scores = [], []
    for r in rows:
        pred = extract(r["generation"], r["data_name"])
        score = pred is not None and _equal(pred, gold(r["gt"], r["data_name"])) is True
        scores.append(score)
        if (pred, score) != (r["pred"], r["score"]):
            differ.append(f"{r['file']} idx {r['idx']}: ours {pred!r} {score}, released {r['pred']!r} {r['score']}")
    return differ, scores


def test_the_released_amc_outputs_of_the_ablation_models_regrade_to_the_harness_own_verdicts():
    """AMC23 of the paper's content ablations (corrupt 0.2 / 0.5 / 0.7, reflection 0.2 / 0.5 / 1.0) and
    the 5K baseline: float golds ("27.0"), every verdict the harness's."""
    rows = _released(("amc23",))
    assert len(rows) == 7 * 40 and len({r["file"] for r in rows}) == 7
    differ, scores = _regrade(rows)
    assert differ == [] and 0 < sum(scores) < len(rows)


@pytest.mark.fidelity
def test_every_released_output_regrades_to_the_harness_own_verdicts():
    """All 26 files: AIME24 of 17 models and checkpoints, and MATH500 / OlympiadBench, where the
    harness's sympy LaTeX parser decides (sets, intervals, tuples, expressions): every verdict, and so
    each file's accuracy as its *_metrics.json reports it."""
    rows = _released(("aime24", "math500", "olympiadbench"))
    assert len(rows) == 17 * 30 + 500 + 675
    differ, scores = _regrade(rows)
    assert differ == []
    for name, acc in (("math500", 70.4), ("olympiadbench", 36.4)):   # *_metrics.json "acc" of short-ckpts
        ours = [s for s, r in zip(scores, rows) if r["data_name"] == name]
        assert round(100 * sum(ours) / len(ours), 1) == acc


def test_the_harness_quirks_are_kept():
    """A few verdicts the harness gives that a careful grader would not: they are its numbers."""
    from reasoning_sft.evaluation.profiles import grade_math_profile
    factored = grade_math_profile("so \\boxed{(a + 5)(b + 2)}", "(a+5)(b+2)", None, "qwen_math")
    assert (factored.extracted, factored.correct) == ("(5)(2)", True)       # its unit list drops "a" and "b"
    grade = grade_math_profile("\\(\\boxed{12^{\\mathrm{th}} \\text{ grade}}\\)", "12", None, "qwen_math")
    assert grade.correct and grade.extracted == "12^{\\mathrm{}}"
    assert not grade_math_profile("the answer is 3", "4", None, "qwen_math").correct
    assert grade_math_profile("", "4", None, "qwen_math").outcome == "no_answer"


def test_the_grade_stage_takes_profile_qwen_math_on_the_released_rows_as_written(tmp_path):
    """Rows as the harness writes them (`code: [text]`, `score: [bool]`, `gt`), graded by the grade stage."""
    rows = _released(("amc23",))[:40]
    path = tmp_path / "released.jsonl"
    path.write_text("".join(json.dumps({"idx": r["idx"], "gt": r["gt"], "code": [r["generation"]], "pred": [r["pred"]],
                                        "score": [r["score"]]}) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "fields.response=code",
                           "fields.gold=gt", "fields.verdict=score", "profile=qwen_math",
                           f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    g = json.loads((tmp_path / "run" / "summary.json").read_text())["grade"]
    assert g["agreement"]["agree"] == 1.0 and g["grading_profile"] == "qwen_math"
    assert g["accuracy"] == pytest.approx(sum(r["score"] for r in rows) / 40)

"""The grade stage: re-grading saved generations from any jsonl, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from grading_cases import SKYT1_CASES, _r1_responses


def _grade(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "reasoning_sft.grade", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grade_stage_on_a_users_skyt1_file(tmp_path):
    rows = [{"qid": f"q{i}", "response": r, "gt": g, "judge": not c} for i, (r, g, c, _) in enumerate(SKYT1_CASES)]
    path = _write(tmp_path / "responses.jsonl", rows)
    proc = _grade(f"input={path}", "fields.response=response", "fields.gold=gt", "thinking_style=skyt1",
                  "fields.verdict=judge", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    graded = [json.loads(line) for line in open(tmp_path / "run" / "graded.jsonl")]
    assert [g["qid"] for g in graded] == [r["qid"] for r in rows]                # every row, input order
    assert [(g["correct"], g["grading"]) for g in graded] == [(c, o) for _, _, c, o in SKYT1_CASES]
    assert graded[0]["extracted"] == "\\tan A = 2" and graded[1]["extracted"] == "8000"
    assert all(g["response"] == r["response"] and g["judge"] == r["judge"] for g, r in zip(graded, rows))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    g = summary["grade"]
    assert g["accuracy"] == pytest.approx(2 / 5) and g["num_problems"] == 5
    assert g["ci95_low"] <= 0.4 <= g["ci95_high"] and g["ci95_high"] - g["ci95_low"] > 0.2
    assert g["grading"] == {"exact": 1, "verified": 1, "not_equal": 1, "no_answer": 1, "truncated": 1}
    assert g["agreement"]["agree"] == 0.0 and g["agreement"]["differ"] == 5       # the judge said the opposite
    assert g["agreement"]["first_differences"][0] == f"{path}:1"
    assert "accuracy 0.400" in proc.stdout


def test_grade_stage_agrees_with_math_verify_on_real_r1_responses(tmp_path, shared_data):
    from math_verify import parse, verify

    from reasoning_sft.evaluation.grading import answer_section
    rows = []
    for i, (response, gold, thinking) in enumerate(_r1_responses(shared_data)):
        if i % 3 == 0:       # a third cut inside the thinking: math-verify on no answer section says wrong
            response = "<think>\n" + thinking[: len(thinking) // 3]
        section = answer_section(response, "r1")
        rows.append({"response": response, "gold": gold,
                     "mv": bool(section is not None and verify(parse(f"${gold}$"), parse(section)))})
    path = _write(tmp_path / "r1.jsonl", rows)
    proc = _grade(f"input={path}", "fields.response=response", "fields.verdict=mv", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    g = json.loads((tmp_path / "run" / "summary.json").read_text())["grade"]
    assert g["thinking_styles"] == {"r1": len(rows)}                              # read from the markers
    assert g["agreement"]["agree"] >= 0.97 and g["grading"]["truncated"] == len(range(0, len(rows), 3))
    # truncated=whole_response credits the boxed answers a cut-off trace never committed to: not here
    proc = _grade(f"input={path}", "truncated=whole_response", f"hydra.run.dir={tmp_path}/whole")
    assert proc.returncode == 0, proc.stderr[-2000:]
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())["grade"]
    assert "truncated" not in whole["grading"] and whole["num_responses"] == len(rows)


def test_grade_stage_names_a_bad_row_before_grading(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"response": "\\boxed{1}", "gt": "1"}, {"response": "\\boxed{2}"}])
    proc = _grade(f"input={path}", "fields.gold=gt", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == \
        f"data error: {path}:2: no field 'gt' (fields.gold); the row has ['response']"
    assert not (tmp_path / "run" / "graded.jsonl").exists()
    proc = _grade(f"input={tmp_path}/none.jsonl", f"hydra.run.dir={tmp_path}/run2")
    assert proc.returncode == 2 and "input=" in proc.stderr and "no such file" in proc.stderr


def test_grade_stage_grades_multiple_choice_letters(tmp_path):
    rows = [{"generation": "<|im_start|>think\nB or C?\n<|im_start|>answer\nAnswer: \\boxed{(B)}", "gold": "B"},
            {"generation": "<|im_start|>think\nIt is \\boxed{C}", "gold": "C"},
            {"generation": "<|im_start|>think\nhm\n<|im_start|>answer\nAnswer: D", "gold": "A"}]
    path = _write(tmp_path / "gpqa.jsonl", rows)
    proc = _grade(f"input={path}", "task=gpqa", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    graded = [json.loads(line) for line in open(tmp_path / "run" / "graded.jsonl")]
    assert [(g["correct"], g["extracted"], g["grading"]) for g in graded] == \
        [(True, "B", "letter"), (False, None, "truncated"), (False, "D", "letter")]

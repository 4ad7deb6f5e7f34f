"""Answer extraction and math-verify equivalence on the real gold answers in ../shared/data."""

from __future__ import annotations

import pytest

from reasoning_sft.data.answers import extract_answer, is_equivalent, last_boxed
from reasoning_sft.evaluation.metrics import accuracy_summary, bootstrap_ci
from grading_cases import SKYT1_CASES, _r1_responses, _rows


def test_last_boxed_handles_nesting_and_cut_off_output():
    assert last_boxed(r"so \boxed{1} then \boxed{\frac{\sqrt{3}}{2}}.") == r"\frac{\sqrt{3}}{2}"
    assert last_boxed(r"\boxed{\left( 3, \frac{\pi}{2} \right)}") == r"\left( 3, \frac{\pi}{2} \right)"
    assert last_boxed(r"\boxed{\frac{1}{2") is None
    assert extract_answer("thinking...\nFinal Answer: 42.") == "42"
    assert extract_answer("no answer here") is None


def test_math500_gold_answers_match_themselves_and_their_boxed_solutions(shared_data):
    rows = _rows(shared_data / "math500.jsonl")
    agree_with_solution = 0
    for row in rows:
        assert is_equivalent(row["answer"], row["answer"]), row["unique_id"]
        agree_with_solution += is_equivalent(last_boxed(row["solution"]), row["answer"])
    # The reference solutions box the same answer (a handful differ only in presentation).
    assert agree_with_solution >= 490


def test_amc_float_answers_grade_as_numbers(shared_data):
    for row in _rows(shared_data / "amc23.jsonl"):
        gold = str(row["answer"])                           # e.g. "27.0"
        integer = str(int(float(gold))) if float(gold).is_integer() else gold
        assert is_equivalent(integer, gold), gold
        assert not is_equivalent(str(float(gold) + 1), gold)


def test_aime_answers_reject_wrong_ones(shared_data):
    for row in _rows(shared_data / "aime24.jsonl") + _rows(shared_data / "aime25.jsonl"):
        gold = str(row["answer"])
        assert is_equivalent(gold, gold)
        assert is_equivalent(f"0{gold}" if len(gold) < 3 else gold, gold)   # AIME's 3-digit form
        assert not is_equivalent(str(int(gold) + 1), gold)


@pytest.mark.parametrize("pred,gold,ok", [
    (r"\frac{1}{2}", "0.5", True), (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}", True),
    ("(1, 2)", r"\left(1,2\right)", True), ("[0, 1)", r"[0,1)", True),
    ("3", "4", False), ("", "4", False), (None, "4", False), ("__import__('os')", "4", False),
])
def test_equivalence(pred, gold, ok):
    assert is_equivalent(pred, gold) is ok


def test_bootstrap_interval_covers_the_mean_and_narrows_with_n():
    small = [True] * 15 + [False] * 15
    lo, hi = bootstrap_ci([float(x) for x in small])
    assert lo < 0.5 < hi and 0.25 < hi - lo < 0.45        # 30 problems: about +-18 points
    big = accuracy_summary(small * 20)
    assert big["accuracy"] == 0.5 and big["ci95_high"] - big["ci95_low"] < hi - lo


def test_a_grading_that_times_out_is_wrong_and_counted(make_cfg):
    from conftest import evaluator_for
    from reasoning_sft.data.answers import grade
    slow = r"\int_0^1 e^{x^{7}}\sin(x^{5})\,dx"      # sympy cannot settle this within a second
    assert grade(slow, "0.3", timeout_seconds=1) == (False, "timeout")
    assert grade(None, "3") == (False, "no_answer") and grade("3", "3") == (True, "exact")
    assert grade(r"\frac{1}{2}", "0.5") == (True, "verified") and grade("4", "3") == (False, "not_equal")
    rows = [{"extracted": slow, "correct": False, "grading": "timeout"},
            {"extracted": "3", "correct": True, "grading": "exact"},
            {"extracted": "x", "correct": False, "grading": "error"}]
    summary = evaluator_for(make_cfg(["eval=synthetic", "eval.bootstrap_samples=10"])).summarize(rows)
    assert summary["grading_timeouts"] == 1 and summary["grading_errors"] == 1
    assert summary["accuracy"] == pytest.approx(1 / 3)


# --- answer-section grading (the papers grade what follows the thinking) ---------------------------

@pytest.mark.parametrize("response,gold,correct,outcome", SKYT1_CASES)
def test_skyt1_responses_are_graded_on_their_solution_section(response, gold, correct, outcome):
    from reasoning_sft.evaluation.grading import grade_response
    result = grade_response(response, gold, "skyt1")
    assert (result.correct, result.outcome) == (correct, outcome)


def test_boxed_inside_cut_off_thinking_is_credited_only_when_asked(make_cfg):
    from reasoning_sft.config import validate_eval_config
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluation.grading import grade_response
    cut = "<think>\nSo far \\boxed{12} seems right, but the second case gives"
    assert grade_response(cut, "12", "r1") == grade_response(cut, "12", "r1", "wrong")
    assert grade_response(cut, "12", "r1").outcome == "truncated"
    assert grade_response(cut, "12", "r1", truncated="whole_response").correct   # graders that credit it
    with pytest.raises(ConfigError, match="eval.grading.truncated='maybe': expected 'wrong' or 'whole_response'"):
        validate_eval_config(make_cfg(["eval=synthetic", "eval.grading.truncated=maybe"], config_name="evaluate"))


def test_real_r1_traces_agree_with_math_verify_on_their_answer_section(shared_data):
    """The 291 real R1-distill AIME traces, in R1's format: our grading equals math-verify run on each
    response's answer section; cut inside the thinking (with the gold boxed there), none is credited."""
    from math_verify import parse, verify

    from reasoning_sft.evaluation.grading import answer_section, grade_response
    responses = _r1_responses(shared_data)
    agree = credited = 0
    for response, gold, thinking in responses:
        ours = grade_response(response, gold, "r1")
        reference = verify(parse(f"${gold}$"), parse(answer_section(response, "r1")))
        agree += ours.correct == bool(reference)
        credited += ours.correct
        cut = "<think>\n" + thinking[: len(thinking) // 2] + f" so maybe \\boxed{{{gold}}}"
        assert grade_response(cut, gold, "r1").outcome == "truncated"
    assert agree / len(responses) >= 0.97 and credited >= 0.97 * len(responses)


def test_real_s1k_attempts_graded_after_the_answer_marker(shared_data):
    from reasoning_sft.evaluation.grading import grade_response
    rows = [r for r in _rows(shared_data / "s1k_sample.jsonl") if r["solution"].strip().isdigit()]
    assert len(rows) == 2            # the two s1K samples whose reference solution is a number
    for row in rows:
        response = ("<|im_start|>think\n" + row["gemini_thinking_trajectory"] + "\n<|im_start|>answer\nAnswer: "
                    + row["gemini_attempt"])
        result = grade_response(response, row["solution"].strip(), "s1")
        assert result.correct and result.extracted == row["solution"].strip()
        assert grade_response(response.split("<|im_start|>answer")[0], row["solution"], "s1").outcome == "truncated"


def test_styles_without_markers_grade_the_whole_response(shared_data):
    from reasoning_sft.evaluation.grading import detect_style, grade_response
    for row in _rows(shared_data / "math500.jsonl")[:100]:
        assert detect_style(row["solution"]) is None
        assert grade_response(row["solution"], row["answer"], None).correct, row["unique_id"]

"""Grading profiles: each paper's released maths grader, pinned on written cases and real rows, through
the grade stage as a user runs it, and with a real HTTP judge endpoint for the graders that ask an LLM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from grading_cases import SKYT1_CASES, _r1_responses
from reasoning_sft.evaluation.profiles import (LONG1K_SYSTEM, Judge, grade_math_profile, s1_extract,
                                               skythought_extract)
from reasoning_sft.schema import JudgeConfig


def test_skythought_reads_the_whole_generation_in_its_released_order():
    # (math_parsing_util.py:246-302) the last `boxed`, then "he answer is", then "final answer is", then the last number
    assert skythought_extract("x \\boxed{3} then \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert skythought_extract("So the answer is 42.\n") == "42"
    assert skythought_extract("My final answer is 7/") == "7"
    assert skythought_extract("values 3, 1,024 and 5.5 apart") == "5.5"
    assert skythought_extract("\\boxed 12$ and more") == "12"
    assert skythought_extract("nothing here") == ""
    verdicts = [grade_math_profile(r, g, "skyt1", "skythought") for r, g, _, _ in SKYT1_CASES]
    # the last number of the whole text (2); "he answer is" takes all that follows it, here the
    # end-of-solution tag too, so `\(8000\).<|end_of_solution|>` is no answer math can read; a thinking that
    # never closed but wrote \boxed{12} is credited, as SkyThought's grader does
    assert [(v.correct, v.outcome) for v in verdicts] == [
        (True, "exact"), (False, "not_equal"), (True, "exact"), (False, "not_equal"), (False, "no_answer")]
    strict = [grade_math_profile(r, g, "skyt1", "strict") for r, g, _, _ in SKYT1_CASES]
    assert [(v.correct, v.outcome) for v in strict] == [(c, o) for _, _, c, o in SKYT1_CASES]


def test_s1_splits_at_its_markers_and_compares_integers_as_integers():
    # openai_math/utils.py:265-300: after `<|im_start|>answer\n`, else after `<|im_start|>` minus a line
    assert s1_extract("<|im_start|>think\nmaybe \\boxed{3}\n<|im_start|>answer\nAnswer: 042") == "042"
    assert s1_extract("<|im_start|>think\nso \\boxed{3}") == "3"          # the header line dropped, the rest read
    assert s1_extract("no markers. answer: B) 7\nmore") == "B) 7\nmore"   # DOTALL, case-insensitive
    cases = [("<|im_start|>think\nok\n<|im_start|>answer\nAnswer: 042", "42", True, "exact"),
             ("<|im_start|>think\nok\n<|im_start|>answer\nFinal Answer: $\\boxed{0.5}$", "\\frac{1}{2}", False, "not_equal"),
             ("<|im_start|>think\nthe thinking never closed, \\boxed{17}", "017", True, "exact"),
             ("<|im_start|>think\nok\n<|im_start|>answer\n", "3", False, "no_answer")]
    for response, gold, correct, outcome in cases:
        v = grade_math_profile(response, gold, "s1", "s1")
        assert (v.correct, v.outcome) == (correct, outcome), response


def test_profiles_on_real_r1_traces_cut_and_whole(shared_data):
    """The 291 real R1-Distill traces, whole and a third of them cut inside the thinking: strict counts
    the cut ones `truncated`; SkyThought's and s1's graders read whatever the text holds."""
    responses = _r1_responses(shared_data)
    whole = [grade_math_profile(r, g, "r1", p) for r, g, _ in responses for p in ("strict", "skythought", "s1")]
    assert sum(v.correct for v in whole) / len(whole) >= 0.97
    cut = [("<think>\n" + t[: len(t) // 3], g) for _, g, t in responses[::3]]
    strict = [grade_math_profile(r, g, "r1", "strict") for r, g in cut]
    sky = [grade_math_profile(r, g, "r1", "skythought") for r, g in cut]
    assert all(v.outcome == "truncated" for v in strict)
    assert all(v.outcome != "truncated" for v in sky) and sum(v.extracted is not None for v in sky) == len(cut)


def _grade(*args):
    return subprocess.run([sys.executable, "-m", "reasoning_sft.grade", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


# s1 with no judge compares strings: only the boxed 12 (in a thinking that never closed) matches
@pytest.mark.parametrize("profile,accuracy,line", [("skythought", 2 / 5, False), ("s1", 1 / 5, True),
                                                   ("strict", 2 / 5, False)])
def test_grade_stage_runs_each_profile_as_written(tmp_path, profile, accuracy, line):
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({"response": r, "gt": g}) + "\n" for r, g, _, _ in SKYT1_CASES))
    proc = _grade(f"input={path}", "fields.response=response", "fields.gold=gt", "thinking_style=skyt1",
                  f"profile={profile}", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    g = json.loads((tmp_path / "run" / "summary.json").read_text())["grade"]
    assert g["accuracy"] == pytest.approx(accuracy)
    assert g["grading_profile"] == profile and g["judge"] == "none"
    # a judged profile without a judge says so, once
    assert proc.stdout.count("no judge endpoint") == (1 if line else 0), proc.stdout
    bad = _grade(f"input={path}", "profile=lenient", f"hydra.run.dir={tmp_path}/bad")
    assert bad.returncode == 2 and "profile='lenient': not a known grading profile (known: strict, skythought, s1, " \
                                   "long1k, qwen_math)" in bad.stderr


def test_s1_judge_is_asked_with_the_released_prompt_and_its_reply_decides(chat_endpoint):
    replies = iter(["1", "-1", "I think it is the first"])
    url = chat_endpoint(lambda prompt, model: next(replies))
    judge = Judge(JudgeConfig(url, "gpt-4o-mini"))
    response = "<|im_start|>think\nok\n<|im_start|>answer\nAnswer: 0.5"
    yes = grade_math_profile(response, "\\frac{1}{2}", "s1", "s1", judge=judge)
    no = grade_math_profile(response, "\\frac{1}{3}", "s1", "s1", judge=judge)
    odd = grade_math_profile(response, "\\frac{1}{2}", "s1", "s1", judge=judge)
    assert (yes.correct, yes.outcome) == (True, "judged") and (no.correct, no.outcome) == (False, "not_equal")
    assert (odd.correct, odd.outcome) == (False, "judge_fallback")          # neither an index nor -1: counted
    first = chat_endpoint.requests[0]
    assert first["model"] == "gpt-4o-mini" and first["temperature"] == 0.5 and first["max_tokens"] == 1024
    prompt = first["messages"][0]["content"]
    assert prompt.startswith("Look at the following attempt by a student and extract the student's answer.")
    assert prompt.endswith("Options: ['\\frac{1}{2}']\n    Attempt: 0.5")
    assert grade_math_profile("Answer: 7", "7", None, "s1", judge=judge).outcome == "exact"   # integers: no call
    assert len(chat_endpoint.requests) == 3


def test_long1k_judge_reads_the_last_five_lines(chat_endpoint):
    url = chat_endpoint(lambda prompt, model: "所以是正确的，\n\n因此最终得[[1]]分。")
    response = "<think>\n" + "\n".join(f"line {i}" for i in range(10)) + "\n</think>\n\nSo the answer is 5."
    v = grade_math_profile(response, "Work.\n5", "r1", "long1k", judge=Judge(JudgeConfig(url, "qwen2.5-32b")), question="Q?")
    assert (v.correct, v.outcome) == (True, "judged")
    request = chat_endpoint.requests[0]
    assert request["messages"][0] == {"role": "system", "content": LONG1K_SYSTEM}
    user = request["messages"][1]["content"]
    assert "问题是:Q?\n标准答案是:5\n模型输出是:line 8line 9</think>So the answer is 5.\n" in user
    assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0.9, 0.7, 32678)
    # without a judge: math-verify on the same five lines
    assert grade_math_profile(response, "5", "r1", "long1k").correct


def test_an_evaluation_builds_its_judge_once(make_cfg, chat_endpoint, tiny_tokenizer, tmp_path):
    """The Evaluator binds the grading profile and its judge once: every response of the evaluation is
    judged through one client, whose one connection the real endpoint sees reused."""
    from conftest import evaluator_for
    from reasoning_sft.training.models import build_tiny_model
    url = chat_endpoint(lambda prompt, model: "所以是正确的，\n\n因此最终得[[1]]分。")
    cfg = make_cfg(["eval=synthetic", "eval.num_problems=4", "eval.max_new_tokens=4", "eval.grading.profile=long1k",
                    f"eval.grading.judge.base_url={url}", "eval.grading.judge.model=qwen-judge"])
    result = evaluator_for(cfg, build_tiny_model(tiny_tokenizer).eval(), tiny_tokenizer).run(tmp_path)["synthetic"]
    assert len(chat_endpoint.requests) == 4                                # one question per problem
    assert len({r["connection"] for r in chat_endpoint.requests}) == 1    # one judge, one client, one connection
    assert result["accuracy"] == 1.0 and result["grading"] == {"judged": 4}
    assert (result["grading_profile"], result["judge"]) == ("long1k", f"qwen-judge at {url}")

"""Grading cases shared by the grading library's tests and the grade stage's: responses written in Sky-T1's
output format, and the bundled real R1 traces as responses."""

from __future__ import annotations

import json


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


SKYT1_CASES = [   # written for the test in Sky-T1's output format: (response, gold, correct, outcome)
    ("<|begin_of_thought|>\n\nLet me see. tan A is 2.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
     "Since the opposite side is twice the adjacent one,\n$$\\tan A = 2$$\n\n<|end_of_solution|>", "2", True, "verified"),
    ("<|begin_of_thought|>\n\nSo 20 cubed is 8000.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
     "Multiplying out, the answer is \\(8000\\).\n\n<|end_of_solution|>", "8000", True, "exact"),
    ("<|begin_of_thought|>\n\nMaybe \\boxed{12}? Let me check the other case, where x", "12", False, "truncated"),
    ("<|begin_of_thought|>\n\nIt is 5, not \\boxed{7}.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
     "The answer is $\\boxed{5}$.\n\n<|end_of_solution|>", "7", False, "not_equal"),
    ("<|begin_of_thought|>\n\nDone.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nI cannot tell."
     "\n\n<|end_of_solution|>", "3", False, "no_answer"),
]



def _r1_responses(shared_data):
    from reasoning_sft.data.loaders import split_r1_trace
    out = []
    for row in _rows(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"):
        thinking, answer = split_r1_trace(row["solution"])
        out.append(("<think>\n" + thinking + "\n</think>\n\n" + answer, str(row["gold_answer"]), thinking))
    return out

"""Grading a response: its answer section per thinking style, then the answer it gives and whether it
equals the gold one (reasoning_sft/data/answers.py: math-verify decides; nothing is executed).

A response is graded on its answer section, the part after the thinking, as the papers grade it:
- s1: after `<|im_start|>answer`; R1: after `</think>`; Sky-T1: after `<|end_of_thought|>`
  (`<|begin_of_solution|>` ... `<|end_of_solution|>`). A style without markers grades the whole text.
- There the last `\\boxed{}` wins; else math-verify's own extraction (LaTeX, then plain expressions)
  on the section, which finds `$$\\tan A = 2$$`, `the answer is \\(8000\\)` or `Answer: 42`.
- A response that never leaves its thinking is `truncated`: wrong, and counted apart. Its thinking may
  hold a `\\boxed{}` the model never committed to. `truncated="whole_response"` grades the whole text
  instead, as graders that credit cut-off traces do.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning_sft.data.answers import extract_answer, extract_letter, grade

# Where the answer section begins, per thinking style (the first marker found wins), and the text
# that closes it. A style not listed here has no markers: its whole response is the answer.
ANSWER_MARKERS = {
    "s1": (("<|im_start|>answer",), ""),
    "r1": (("</think>",), ""),
    "skyt1": (("<|begin_of_solution|>", "<|end_of_thought|>"), "<|end_of_solution|>"),
}
# Markers that tell a style apart when the response does not say (grade stage, user files).
_STYLE_SIGNS = (("skyt1", "<|begin_of_thought|>"), ("skyt1", "<|end_of_thought|>"), ("s1", "<|im_start|>think"),
                ("s1", "<|im_start|>answer"), ("r1", "<think>"), ("r1", "</think>"))
OUTCOMES = ("exact", "verified", "judged", "not_equal", "no_answer", "truncated", "timeout", "error", "judge_fallback",
            "letter", "default_a")   # letter: a multiple-choice letter read; default_a: s1's "A" for an unreadable one


@dataclass(frozen=True)
class Grade:
    correct: bool
    extracted: str | None
    outcome: str           # one of OUTCOMES (code: the sandbox's verdict)
    sandbox: dict | None = None   # code: what the sandbox's containment held for this program


def detect_style(text: str) -> str | None:
    """The thinking style whose markers a response carries, None when it carries none."""
    for style, sign in _STYLE_SIGNS:
        if sign in text:
            return style
    return None


def answer_section(text: str, style: str | None) -> str | None:
    """The response's answer section; None when a style with markers never reached it (truncated)."""
    if style not in ANSWER_MARKERS:
        return text
    markers, closer = ANSWER_MARKERS[style]
    for marker in markers:
        at = text.find(marker)
        if at >= 0:
            section = text[at + len(marker):]
            if closer and closer in section:
                section = section[: section.index(closer)]
            return section
    return None


def grade_response(response: str, gold: str, style: str | None, truncated: str = "wrong",
                   timeout_seconds: int = 5) -> Grade:
    """Grade a whole model response against the gold answer, reading its answer section (`truncated`:
    one of schema.TRUNCATED_POLICIES, checked with the config)."""
    section = answer_section(response, style)
    if section is None:
        if truncated == "wrong":
            return Grade(False, None, "truncated")
        section = response
    extracted = extract_answer(section, timeout_seconds)
    correct, outcome = grade(extracted, gold, timeout_seconds)
    return Grade(correct, extracted, outcome)


def grade_letter_response(response: str, gold: str, style: str | None, truncated: str = "wrong") -> Grade:
    """Grade a multiple-choice response (GPQA) against the gold letter, on its answer section."""
    section = answer_section(response, style)
    if section is None and truncated == "wrong":
        return Grade(False, None, "truncated")
    letter = extract_letter(response if section is None else section)
    return Grade(letter == gold.strip().strip("()"), letter, "no_answer" if letter is None else "letter")



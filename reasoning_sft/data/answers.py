"""What an answer is and when two are equal: the last `\\boxed{}` (else math-verify's extraction, else an
`Answer:` line), compared by math-verify. Model output is parsed, never executed. Used to grade a data
pool against its gold answers (data/correctness.py, curation's difficulty) and every evaluation
(reasoning_sft/evaluation/grading.py reads the answer section first)."""

from __future__ import annotations

import re


_ANSWER_LINE = re.compile(r"(?:Final Answer|Answer)\s*:\s*(.+)", re.I)


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` (or `\fbox{...}`), nested braces included."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None   # unbalanced: the generation was cut off


def _parse(text: str, timeout_seconds: int) -> list:
    from math_verify import parse   # imported when first used: sympy takes a second, and a config check none
    return parse(text, parsing_timeout=timeout_seconds, raise_on_error=True)


def extract_answer(section: str, timeout_seconds: int = 5) -> str | None:
    r"""The answer a section gives: its last `\boxed{}`, else what math-verify extracts from it, else
    the last `Answer:` line."""
    boxed = last_boxed(section)
    if boxed is not None:
        return boxed
    from math_verify.errors import TimeoutException
    try:
        found = _parse(section, timeout_seconds)
    except (TimeoutException, Exception):  # noqa: BLE001 - nothing extractable is no answer
        found = []
    if found:
        return str(found[-1]).strip()
    lines = _ANSWER_LINE.findall(section)   # s1's own pattern: `Answer: B` holds no math to extract
    return lines[-1].strip().rstrip(".").strip() or None if lines else None


def grade(pred: str | None, gold: str, timeout_seconds: int = 5) -> tuple[bool, str]:
    """(correct, outcome) of an extracted answer: outcome is 'exact', 'verified', 'not_equal',
    'no_answer', 'timeout' or 'error'. A grading that times out or fails counts as wrong, and the
    summary counts it apart."""
    if pred is None or not pred.strip():
        return False, "no_answer"
    if pred.strip() == gold.strip():
        return True, "exact"
    from math_verify import verify
    from math_verify.errors import TimeoutException
    try:
        ok = verify(_parse(f"${gold}$", timeout_seconds), _parse(f"${pred}$", timeout_seconds),
                    timeout_seconds=timeout_seconds, raise_on_error=True)
    except TimeoutException:   # a BaseException in math-verify: caught by name, nothing else is
        return False, "timeout"
    except Exception:  # noqa: BLE001 - unparsable or unsupported by sympy: wrong, and counted
        return False, "error"
    return bool(ok), "verified" if ok else "not_equal"


def is_equivalent(pred: str | None, gold: str, timeout_seconds: int = 5) -> bool:
    return grade(pred, gold, timeout_seconds)[0]


def extract_letter(section: str, timeout_seconds: int = 5) -> str | None:
    r"""A multiple-choice letter, `B` or `(B)` boxed or extracted; `A or B` is no answer."""
    answer = extract_answer(section, timeout_seconds)
    if answer is None:
        return None
    letters = [c for c in answer.replace("\\text", "") if c in "ABCD"]
    return letters[0] if len(letters) == 1 else None

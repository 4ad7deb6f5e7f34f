"""Answer extraction and equivalence. Model output is parsed, never executed: math-verify decides."""

from __future__ import annotations

import re

from math_verify import parse, verify
from math_verify.errors import TimeoutException

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


def extract_answer(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    lines = _ANSWER_LINE.findall(text)
    return lines[-1].strip().rstrip(".") if lines else None


def grade(pred: str | None, gold: str, timeout_seconds: int = 5) -> tuple[bool, str]:
    """(correct, outcome): outcome is 'exact', 'verified', 'not_equal', 'no_answer', 'timeout' or
    'error'. A grading that times out or fails counts as wrong, and the summary counts it apart."""
    if pred is None or not pred.strip():
        return False, "no_answer"
    if pred.strip() == gold.strip():
        return True, "exact"
    try:
        ok = verify(parse(f"${gold}$", parsing_timeout=timeout_seconds, raise_on_error=True),
                    parse(f"${pred}$", parsing_timeout=timeout_seconds, raise_on_error=True),
                    timeout_seconds=timeout_seconds, raise_on_error=True)
    except TimeoutException:   # a BaseException in math-verify: caught by name, nothing else is
        return False, "timeout"
    except Exception:  # noqa: BLE001 - unparsable or unsupported by sympy: wrong, and counted
        return False, "error"
    return bool(ok), "verified" if ok else "not_equal"


def is_equivalent(pred: str | None, gold: str, timeout_seconds: int = 5) -> bool:
    return grade(pred, gold, timeout_seconds)[0]

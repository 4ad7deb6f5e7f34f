"""Answer extraction and equivalence. Model output is parsed, never executed: math-verify decides."""

from __future__ import annotations

import re

from math_verify import parse, verify

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


def is_equivalent(pred: str | None, gold: str, timeout_seconds: int = 5) -> bool:
    """math-verify on `$...$`-wrapped strings; a grading that times out or fails counts as wrong."""
    if pred is None or not pred.strip():
        return False
    if pred.strip() == gold.strip():
        return True
    try:
        return bool(verify(parse(f"${gold}$", parsing_timeout=timeout_seconds),
                           parse(f"${pred}$", parsing_timeout=timeout_seconds),
                           timeout_seconds=timeout_seconds))
    except Exception:  # noqa: BLE001 - math-verify raises on timeouts and unparsable input alike
        return False

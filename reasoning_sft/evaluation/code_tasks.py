"""Code reasoning: LiveCodeBench problems (and APPS / TACO rows in the same test format), prompts as
SkyThought builds them, the program a response commits to, and its verdict from the sandbox.

A problem row in LiveCodeBench's released format: `question_id`, `question_content`, `starter_code`,
`contest_date`, `public_test_cases` (a JSON string of `[{input, output, testtype}]`), optional
`private_test_cases` (the same JSON, or as released: base64(zlib(pickle(json string)))), `metadata`
(JSON with `func_name` for call-based problems). The pickled tests are read with an unpickler that
admits only strings: a crafted file cannot run code here.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from dataclasses import dataclass

from reasoning_sft.errors import DataError
from reasoning_sft.evaluation.grading import answer_section

# SkyThought's LiveCodeBench prompts (skythought/evals/tasks/livecodebench): the instruction, then the question.
STDIN_PROMPT = ("Generate an executable Python function generated from the given prompt. The function should take "
                "stdin as input and print the output. Simply call the function after the definition.")
FUNCTION_PROMPT = ("Generate an executable Python function generated from the given prompt. Return the function "
                   "body without invoking it at the final solution.")
CODE_TASKS = ("livecodebench", "apps", "taco")


@dataclass(frozen=True)
class CodeProblem:
    id: str
    question: str
    starter_code: str
    input_output: str          # LiveCodeBench's run_test sample: JSON of inputs, outputs, fn_name
    contest_date: str = ""
    difficulty: str = ""

    @property
    def is_stdin(self) -> bool:
        return json.loads(self.input_output).get("fn_name") is None


class _StringsOnly(pickle.Unpickler):
    def find_class(self, module, name):   # any class or function reference is refused
        raise pickle.UnpicklingError(f"refused: the pickle references {module}.{name}; only strings are admitted")


def _inflate(data: bytes, max_bytes: int, where: str) -> bytes:
    """zlib with a ceiling: a few hundred KB can inflate to gigabytes."""
    d = zlib.decompressobj()
    out = d.decompress(data, max_bytes + 1)
    if len(out) > max_bytes or d.unconsumed_tail:
        raise DataError(f"{where}: private_test_cases inflates to more than {max_bytes >> 20} MB "
                        "(raise code.max_tests_mb if the problem really is that large)")
    return out


def decode_tests(value, where: str, max_bytes: int = 256 << 20) -> list[dict]:
    """Test cases from a JSON string, a list, or LiveCodeBench's base64(zlib(pickle(json)))."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        inner = _StringsOnly(io.BytesIO(_inflate(base64.b64decode(value.encode()), max_bytes, where))).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - anything but a pickled string is refused, named
        raise DataError(f"{where}: private_test_cases is neither JSON nor a pickled JSON string ({e})") from e
    if not isinstance(inner, str):
        raise DataError(f"{where}: private_test_cases unpickles to {type(inner).__name__}, expected a JSON string")
    return json.loads(inner)


def problem_from_row(row: dict, where: str, public_only: bool = False, max_tests_mb: int = 256) -> CodeProblem:
    for key in ("question_content", "public_test_cases"):
        if key not in row:
            raise DataError(f"{where}: no field {key!r} (a LiveCodeBench problem row; the row has {sorted(row)})")
    tests = decode_tests(row["public_test_cases"], where, max_tests_mb << 20)
    if not public_only:
        tests += decode_tests(row.get("private_test_cases"), where, max_tests_mb << 20)
    if not tests or not all(isinstance(t, dict) and "input" in t and "output" in t for t in tests):
        raise DataError(f"{where}: expected test cases as [{{input, output, testtype}}], got {str(tests)[:120]}")
    metadata = row.get("metadata") or {}
    metadata = json.loads(metadata) if isinstance(metadata, str) and metadata.strip() else metadata or {}
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    input_output = json.dumps({"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests],
                               "fn_name": fn_name})
    return CodeProblem(id=str(row.get("question_id", row.get("id", where))), question=row["question_content"],
                       starter_code=row.get("starter_code") or "", input_output=input_output,
                       contest_date=str(row.get("contest_date", "")), difficulty=str(row.get("difficulty", "")))


def in_window(problem: CodeProblem, start_date: str | None, end_date: str | None) -> bool:
    """LiveCodeBench is defined by a release window of contest dates (ISO dates, inclusive)."""
    day = problem.contest_date[:10]
    return (not start_date or day >= str(start_date)) and (not end_date or day <= str(end_date))


def problem_prompt(problem: CodeProblem) -> str:
    text = (STDIN_PROMPT if problem.is_stdin else FUNCTION_PROMPT) + problem.question
    return text + ("\n" + problem.starter_code if problem.starter_code else "")


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


def extract_code(response: str, style: str | None) -> str | None:
    """The program a response commits to: the last fenced code block of its answer section (None when
    the response never left its thinking, or its answer holds no code block)."""
    section = answer_section(response, style)
    if section is None:
        return None
    blocks = _FENCE.findall(section)
    return blocks[-1].strip() or None if blocks else None

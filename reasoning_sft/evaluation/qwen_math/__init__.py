"""The `qwen_math` grading profile: the Qwen2.5-Math evaluation harness that scored the Sky-T1 paper's
tables, as SkyThought's `corrupt` branch vendors it (skythought/Qwen2.5-Math/evaluation; `sh/eval.sh`
runs `math_eval.py --prompt_type Sky-T1 --seed 0 --temperature 0 --n_sampling 1`).

A response is read as the harness reads it (`run_execute` for a non-program prompt type): the answer
`extract_answer` finds (the last `boxed`, "he answer is", "final answer is", else the last number), then
`strip_string` (vendor/parser.py, verbatim). The gold answer is `strip_string` twice, as the harness's
generation and its `evaluate` each apply it. Equality is the harness's `math_equal` (vendor/grader.py,
verbatim), run as the harness runs it: in a process of its own (worker.py), 3 seconds a comparison
(of the worker's CPU time; a comparison that overruns is not equal and is counted as `timeout`), with sympy's LaTeX parser on
antlr 4.11, installed by `make install` beside the venv (Hydra's antlr 4.9 cannot parse with it).
Re-grading the harness's own released outputs gives its own verdicts (tests/evaluation/test_qwen_math.py).
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import time
from pathlib import Path

from reasoning_sft.errors import ConfigError

ANTLR_DIR = Path(sys.prefix) / "antlr4-4.11"     # antlr4-python3-runtime 4.11.1, the worker's alone (make install)
WORKER = Path(__file__).with_name("worker.py")
SECONDS_PER_COMPARISON = 3                       # evaluate.py: pebble ProcessPool, timeout=3


def require() -> None:
    """The profile's one dependency outside the venv, or one line saying how to get it."""
    if not (ANTLR_DIR / "antlr4").is_dir():
        raise ConfigError(f"grading profile qwen_math: {ANTLR_DIR} is missing (the harness's LaTeX parser needs "
                          "antlr4-python3-runtime 4.11.1 beside Hydra's 4.9): run make install, or pip install "
                          f"--no-deps --target {ANTLR_DIR} antlr4-python3-runtime==4.11.1")


class EqualityWorker:
    """`math_equal` in worker.py's process, restarted after a comparison that overruns its time.

    The harness gave a comparison 3 s of wall time on its own machine; here the 3 s are the worker's CPU
    time, so a verdict does not depend on what else the machine is running (wall time made one of them
    flip on a loaded CI machine: sympy's comparison of (5)(2) with (a+5)(b+2) took longer than 3 s of
    wall time while other processes held the cores). A comparison that never returns is still cut, at
    WALL_LIMIT seconds."""

    WALL_LIMIT = 120.0

    def __init__(self, seconds: float = SECONDS_PER_COMPARISON):
        self.seconds, self.proc = seconds, None

    def _start(self) -> None:
        require()
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(ANTLR_DIR)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def _cpu_seconds(self) -> float:
        import psutil
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return float("inf")
        return t.user + t.system

    def _ask(self, pred: str, gt: str, cpu_budget: float) -> str:
        self.proc.stdin.write(json.dumps({"pred": pred, "gt": gt}) + "\n")
        self.proc.stdin.flush()
        start, deadline = self._cpu_seconds(), time.monotonic() + self.WALL_LIMIT
        while time.monotonic() < deadline and self._cpu_seconds() - start < cpu_budget:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if ready:
                return self.proc.stdout.readline()
        return ""

    def equal(self, pred: str, gt: str) -> bool | None:
        """math_equal(pred, gt); None when it overran its time (the harness counts it not equal)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
            # imports (sympy, the parsers) before the first timed comparison, on a budget of their own
            if not self._ask("1", "1", self.WALL_LIMIT):
                self.close()
                raise RuntimeError("grading profile qwen_math: the math_equal worker did not start "
                                   f"(python {WORKER} {ANTLR_DIR})")
        line = self._ask(pred, gt, self.seconds)
        if not line:
            self.close()
            return None
        return bool(json.loads(line)["equal"])

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


_worker: EqualityWorker | None = None


def _equal(pred: str, gt: str) -> bool | None:
    global _worker
    if _worker is None:
        _worker = EqualityWorker()
        atexit.register(_worker.close)
    return _worker.equal(pred, gt)


def extract(response: str, data_name: str = "math500") -> str | None:
    """The harness's prediction for a response (`run_execute`): None for an empty one."""
    from reasoning_sft.evaluation.qwen_math.vendor.parser import STRIP_EXCEPTIONS, extract_answer, strip_string
    if not response or response == "error":
        return None
    return strip_string(extract_answer(response, data_name), skip_unit=data_name in STRIP_EXCEPTIONS)


def gold(answer: str, data_name: str = "math500") -> str:
    """The gold answer as the harness compares it: `strip_string` at generation and again at evaluation."""
    from reasoning_sft.evaluation.qwen_math.vendor.parser import STRIP_EXCEPTIONS, strip_string
    if data_name in STRIP_EXCEPTIONS:
        return answer
    return strip_string(strip_string(answer))


def grade_qwen_math(response: str, answer: str):
    from reasoning_sft.evaluation.grading import Grade
    pred, gt = extract(response), gold(answer)
    if pred is None:
        return Grade(False, None, "no_answer")
    equal = _equal(pred, gt)
    if equal is None:
        return Grade(False, pred, "timeout")
    return Grade(equal, pred, ("exact" if pred.strip().lower() == gt.strip().lower() else "verified") if equal
                 else "not_equal")

"""Run model-written programs against their tests, contained, and grade them outside the program.

The program's process never sees an expected output and never writes a verdict. Each program runs in
its own `python -I` child (reasoning_sft/evaluation/sandbox_child.py) that gets the code and the test
*inputs*, contains itself, and reports per test what the program printed or returned (tagged plain
data). This process reads that channel with a deadline and a size cap, and compares each result with
the expected output by LiveCodeBench's own rules (`testing_util`'s stripped lines and Decimal
comparison; `==` on the returned value): verdicts as LiveCodeBench's (True per passed test, -2 wrong
answer, -3 time limit, -4 runtime error; stopping at the first failure). A channel that does not parse
is the program's doing: a runtime error, never a crash of the stage.

Containment (sandbox_child.contain) fails closed: `code.sandbox=strict` (the default) refuses to run
any program where an isolation step cannot be established (`check_sandbox` says what is missing and
how to get it, before the first program); `code.sandbox=weak` runs with whatever holds, and every
summary records it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reasoning_sft.errors import ConfigError
from reasoning_sft.schema import CodeEvalConfig

CHILD = Path(__file__).with_name("sandbox_child.py")
VERDICTS = ("passed", "wrong answer", "timeout", "runtime error", "no code")
POLICIES = ("strict", "weak")
HOW_TO_CONTAIN = ("run the evaluation as root in a container, or as a user: enable unprivileged user namespaces "
                  "(sysctl user.max_user_namespaces=15000; Debian: kernel.unprivileged_userns_clone=1; "
                  "Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns=0) and run inside a cgroup v2 that "
                  "delegates memory and pids (systemd-run --user --scope -p Delegate=yes <command>); or accept "
                  "weaker isolation explicitly with code.sandbox=weak")


OUTPUT_MB = 16    # what a program may report over its channel, all tests together (docs/safety.md)
LINE_CONTAINERS = 1_000_000   # JSON lists and objects in one line: ~60 MB of the evaluator's memory at most


class SandboxRefused(ConfigError):
    """Containment could not be established and the policy is strict."""


def _verdict(results: list, meta: dict) -> str:
    if results and all(r is True for r in results):
        return "passed"
    code = meta.get("error_code")
    if code is None:
        codes = [r for r in results if r is not True]
        code = -2 if codes and codes[0] is False else (codes[0] if codes else -4)
    return {-2: "wrong answer", -3: "timeout", -1: "timeout"}.get(code, "runtime error")


def isolation_summary(sandboxes: list) -> list[dict]:
    """How many programs ran under each isolation (the summary's `sandbox_isolation`)."""
    from collections import Counter
    counts = Counter(json.dumps(s, sort_keys=True) for s in sandboxes if s)
    return [{"isolation": json.loads(k), "programs": v} for k, v in counts.items()]


def require_harness() -> None:
    """LiveCodeBench's grading code must be importable (`make install` puts it in the venv)."""
    import importlib.util

    if importlib.util.find_spec("livecodebench") is None:
        raise ConfigError("code evaluation grades with LiveCodeBench's own testing_util: "
                          "pip install --no-deps nvidia-livecodebench==26.3 (its grading needs only numpy)")


class ChannelError(ValueError):
    """The child's channel did not carry what the harness writes: the program tampered with it."""


def decode(value):
    """The child's tagged plain data back to Python values (sandbox_child.encode); nothing is executed,
    and nothing is hashed that the program chose: a set, or a mapping with a key that is not a string,
    can equal nothing JSON holds (the expected outputs are JSON), so it is kept as an Unequal in linear
    time, never built (a set of ints that all hash alike held the GIL for minutes: issue 38)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [decode(v) for v in value]
    if type(value) is not dict or len(value) != 1:
        raise ChannelError(f"not a tagged value: {str(value)[:80]}")
    (tag, inner), = value.items()
    if tag == "$i" and isinstance(inner, str):
        return int(inner)
    if tag == "$x" and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if tag == "$o" and isinstance(inner, str):
        return Opaque(inner)
    if tag == "$dec" and isinstance(inner, str):
        import decimal
        try:
            return decimal.Decimal(inner)
        except decimal.InvalidOperation as e:
            raise ChannelError(f"not a Decimal: {inner[:80]!r}") from e
    if tag in ("$nd", "$ns"):
        return _numpy(tag, inner)
    if not isinstance(inner, list):
        raise ChannelError(f"tag {tag!r} without a list")
    items = [decode(v) for v in inner]
    if tag == "$t":
        return tuple(items)
    if tag in ("$s", "$fs"):
        return Unequal("set" if tag == "$s" else "frozenset", items)
    if tag in MAPPINGS and all(isinstance(kv, list) and len(kv) == 2 for kv in items):
        if not all(isinstance(k, str) for k, _ in items):   # str keys hash with this process's own seed
            return Unequal(MAPPING_NAMES[tag], items)
        return MAPPINGS[tag]((k, v) for k, v in items)
    raise ChannelError(f"unknown tag {tag!r}")


def _defaultdict(pairs):
    import collections
    return collections.defaultdict(None, pairs)   # a factory never crosses: equality ignores it


def _counter(pairs):
    import collections
    counter = collections.Counter()
    counter.update(dict(pairs))   # as the program's: its counts as they were, zeros and negatives included
    return counter


def _ordered(pairs):
    import collections
    return collections.OrderedDict(pairs)


MAPPINGS = {"$d": dict, "$counter": _counter, "$od": _ordered, "$dd": _defaultdict}
MAPPING_NAMES = {"$d": "dict", "$counter": "Counter", "$od": "OrderedDict", "$dd": "defaultdict"}


def _numpy(tag: str, inner):
    """A numpy array or scalar of a plain dtype (bool, integers, floats, strings), rebuilt as itself."""
    import numpy as np
    if not (isinstance(inner, list) and len(inner) == (3 if tag == "$nd" else 2) and isinstance(inner[0], str)):
        raise ChannelError(f"a malformed {tag} value")
    try:
        dtype = np.dtype(inner[0])
    except TypeError as e:
        raise ChannelError(f"not a dtype: {inner[0][:40]!r}") from e
    if dtype.kind not in "biufU" or dtype.itemsize > 1024:
        raise ChannelError(f"a numpy dtype plain data cannot hold: {inner[0][:40]!r}")
    if tag == "$ns":
        return dtype.type(decode(inner[1]))
    shape, data = inner[1], decode(inner[2])
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and isinstance(data, list)):
        raise ChannelError("a malformed numpy array")
    size = 1
    for n in shape:
        size *= n
    if size != len(data):
        raise ChannelError("a numpy array whose shape does not hold its data")
    return np.array(data, dtype=dtype).reshape(shape)


class Unequal:
    """A returned set, or a mapping keyed by more than strings: no value JSON holds equals it (JSON has
    no sets, and its objects are keyed by strings), so it equals nothing; its items kept for display."""
    __hash__ = object.__hash__

    def __init__(self, type_name: str, items: list):
        self.type_name, self.items = type_name, items

    def __eq__(self, other):
        return False

    def __repr__(self):
        if self.type_name in ("set", "frozenset"):
            inner = ", ".join(repr(i) for i in self.items[:50])
            return f"{{{inner}}}" if self.type_name == "set" else f"frozenset({{{inner}}})"
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.items[:50])
        return f"{{{inner}}}" if self.type_name == "dict" else f"{self.type_name}({{{inner}}})"


class Opaque:
    """A returned object of a type plain data cannot hold: equal to nothing."""
    __hash__ = object.__hash__

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __eq__(self, other):
        return False

    def __repr__(self):
        return f"<{self.type_name} object>"


def compare(line: dict, expected: str, test_input, call_based: bool) -> tuple[list, dict]:
    """One test's reported result against its expected output, as LiveCodeBench's grade_call_based /
    grade_stdio compare them. -> (what LiveCodeBench records for it: [True] when it passed; the
    metadata of the failure, {} when it passed)"""
    from livecodebench.evaluation.testing_util import convert_line_to_decimals, get_stripped_lines, truncatefn
    if call_based:
        if "value" not in line:
            raise ChannelError("a call-based result without a value")
        prediction, gold = decode(line["value"]), json.loads(expected)
        runtime = {"error_code": -4, "error_message": "Runtime Error", "inputs": truncatefn(test_input),
                   "expected": truncatefn(gold)}
        try:   # grade_call_based: `tmp_result = prediction == gt_out`, then `if not tmp_result`, in its try
            result = prediction == gold
        except Exception as e:  # noqa: BLE001 - e.g. arrays that do not broadcast: its runtime error
            return [-4], {**runtime, "error": repr(e)}
        try:
            wrong = not result
        except Exception as e:  # noqa: BLE001 - the truth value of an array of several: its runtime error
            return [_as_recorded(result), -4], {**runtime, "error": repr(e)}
        if not wrong:
            return [_as_recorded(result)], {}
        return [_as_recorded(result)], {"output": truncatefn(prediction), "inputs": truncatefn(test_input),
                                        "expected": truncatefn(gold), "error_code": -2, "error_message": "Wrong Answer"}
    prediction = line.get("stdout")
    if not isinstance(prediction, str):
        raise ChannelError("a stdin program's result without its stdout")
    wrong = {"output": truncatefn(prediction), "inputs": truncatefn(test_input), "expected": truncatefn(expected),
             "error_code": -2}
    got, want = get_stripped_lines(prediction), get_stripped_lines(expected)
    if len(got) != len(want):
        return [-2], {**wrong, "error_message": "Wrong answer: mismatched output length"}
    for i, (a, b) in enumerate(zip(got, want)):
        if a == b:
            continue
        ok_a, dec_a = convert_line_to_decimals(a)
        ok_b, dec_b = convert_line_to_decimals(b)
        if not (ok_a and ok_b and dec_a == dec_b):
            return [-2], {**wrong, "error_message": f"Wrong answer at output_line_idx={i}: "
                                                   f"{truncatefn(a)} != {truncatefn(b)}"}
    return [True], {}


def _as_recorded(result):
    """A comparison's result as LiveCodeBench's scorer keeps it (evaluate_generations_by_problem: an
    array's first element, a numpy bool as a bool), JSON-serialisable."""
    import numpy as np
    if isinstance(result, np.ndarray):
        return bool(result.item(0)) if result.size else False
    if isinstance(result, np.bool_):
        return bool(result)
    return result if isinstance(result, bool) else bool(result)


class _Channel:
    """Lines from the child's pipe, each read before a deadline, all of them within a size cap."""

    def __init__(self, fd: int, deadline: float, cap: int):
        self.fd, self.deadline, self.left, self.buffer = fd, deadline, cap, bytearray()

    def line(self) -> dict | None:
        """The next JSON object; None at end of file or past the deadline. Linear in what was read (each
        byte searched for the newline once), and a line of more than LINE_CONTAINERS lists and objects
        is refused before it is parsed (a 16 MB line of `[]` would have cost 865 MB to build)."""
        searched = 0
        while (end := self.buffer.find(b"\n", searched)) < 0:
            searched = len(self.buffer)
            wait = self.deadline - time.monotonic()
            if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.left -= len(chunk)
            if self.left < 0:
                raise ChannelError("the program reported more than its output cap (OUTPUT_MB)")
            self.buffer += chunk
        raw = bytes(self.buffer[:end])
        del self.buffer[:end + 1]
        if raw.count(b"[") + raw.count(b"{") > LINE_CONTAINERS:
            raise ChannelError(f"a line of more than {LINE_CONTAINERS:,} lists and objects")
        try:
            line = json.loads(raw)
        except ValueError as e:
            raise ChannelError(f"a line that is not JSON ({e})") from e
        if not isinstance(line, dict):
            raise ChannelError("a line that is not an object")
        return line


def _job(code: str | None, tests: dict, limits: CodeEvalConfig) -> dict:
    n = max(1, len(tests.get("inputs", [])))
    return {"code": code, "inputs": tests.get("inputs", []), "fn_name": tests.get("fn_name"),
            "timeout": limits.timeout_seconds, "policy": limits.sandbox, "parent": os.getpid(),
            "limits": {"cpu_seconds": (limits.timeout_seconds + 1) * n + 5, "memory_bytes": limits.memory_mb << 20,
                       "file_bytes": limits.file_mb << 20, "processes": limits.processes,
                       "disk_mb": limits.disk_mb}}


def _start(job: dict):
    """The child for `job`, in a cgroup of its own where one can be made: (process, channel fd, group)."""
    from reasoning_sft.evaluation.cgroups import make
    group, why = make(job["limits"]["memory_bytes"], job["limits"]["processes"] + 2)   # + launcher and pid 1
    if group is not None:
        job = {**job, "cgroup_procs": group.procs, "cgroup_kind": group.kind}
    else:
        job = {**job, "cgroup_missing": [f"memory cgroup of its own ({why})"]}
    try:
        proc, fd = _spawn(job)
    except BaseException:
        if group is not None:
            group.remove()
        raise
    return proc, fd, group


def _stop(proc: subprocess.Popen, group) -> float | None:
    """The child stopped (its namespace killed and reaped), then its cgroup emptied and removed; the
    most memory the program held, MB (None without a cgroup)."""
    _kill_group(proc)
    if group is None:
        return None
    peak = group.peak_mb()
    group.remove()
    return peak


def _spawn(job: dict) -> tuple[subprocess.Popen, int]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/sandbox", "TMPDIR": "/sandbox",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", str(CHILD), str(write_fd)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
                                env=env, pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    return proc, read_fd


def _missing_line(isolation: dict) -> str:
    return (f"the code sandbox cannot contain programs here: no {'; no '.join(isolation.get('missing', []))}. "
            f"To run untrusted code, {HOW_TO_CONTAIN}")


def check_sandbox(limits: CodeEvalConfig = CodeEvalConfig()) -> dict:
    """Establish the sandbox once without a program: what holds (for summaries), or SandboxRefused
    (strict) naming what is missing and how to get it. Called before the first program runs."""
    proc, fd, group = _start(_job(None, {}, limits))
    try:
        first = _Channel(fd, time.monotonic() + 60, 1 << 20).line()
    except ChannelError:
        first = None
    finally:
        os.close(fd)
        _stop(proc, group)
    isolation = (first or {}).get("isolation")
    if not isinstance(isolation, dict):
        raise SandboxRefused(f"the code sandbox did not start (exit status {proc.returncode}); "
                             f"{sys.executable} -I {CHILD} must run")
    if isolation.get("missing") and limits.sandbox == "strict":
        raise SandboxRefused(_missing_line(isolation))
    return {**isolation, "policy": limits.sandbox}


def run_program(code: str | None, input_output: str, limits: CodeEvalConfig = CodeEvalConfig()) -> dict:
    """Grade one program on one problem (`input_output`: LiveCodeBench's JSON of inputs, outputs and
    fn_name). Returns {verdict, results, metadata, isolation, seconds}."""
    if not code or not code.strip():
        return {"verdict": "no code", "results": [], "metadata": {}, "isolation": {}, "seconds": 0.0, "memory_peak_mb": None}
    tests = json.loads(input_output)
    inputs, outputs, call_based = tests["inputs"], tests["outputs"], tests.get("fn_name") is not None
    wall = (limits.timeout_seconds + 1) * len(inputs) + 5 + 10       # LiveCodeBench's global timeout + start-up
    start = time.monotonic()
    proc, fd, group = _start(_job(code, {"inputs": inputs, "fn_name": tests.get("fn_name")}, limits))
    results: list = []
    meta: dict = {}
    isolation: dict = {}
    try:
        channel = _Channel(fd, start + wall, OUTPUT_MB << 20)
        first = channel.line()
        if first is None or not isinstance(first.get("isolation"), dict):
            raise ChannelError("no isolation report")   # the harness writes it before the program runs
        isolation = {**first["isolation"], "policy": limits.sandbox}
        if isolation.get("missing") and limits.sandbox == "strict":
            raise SandboxRefused(_missing_line(isolation))
        for i, (test_input, expected) in enumerate(zip(inputs, outputs)):
            line = channel.line()
            if line is None:   # killed, out of time, or exited without a word
                timed_out = time.monotonic() >= start + wall or proc.poll() in (-signal.SIGKILL, -signal.SIGXCPU)
                results.append(-1 if timed_out else -4)
                meta = {"error_code": -3 if timed_out else -4,
                        "error_message": "global timeout" if timed_out else f"exit status {proc.poll()}"}
                break
            if line.get("test") != i:
                raise ChannelError(f"result for test {line.get('test')!r} where test {i} was due")
            if "error" in line:
                code_ = line["error"] if line["error"] in (-3, -4) else -4
                results.append(code_)
                meta = {"error_code": code_, "error_message": str(line.get("message", ""))[:300]}
                if code_ == -4:
                    meta["error"] = meta["error_message"]
                break
            recorded, failure = compare(line, expected, test_input, call_based)
            results += recorded          # as LiveCodeBench records them
            if failure:
                meta = failure
                break
    except SandboxRefused:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the channel held (too deep, a 5,000-digit int...) is the program's
        results.append(-4)
        meta = {"error_code": -4, "error_message": "Runtime Error: the program corrupted its result channel "
                                                   f"({type(e).__name__}: {str(e)[:200]})"}
    finally:
        os.close(fd)
        peak = _stop(proc, group)
    return {"verdict": _verdict(results, meta), "results": results, "metadata": meta, "isolation": isolation,
            "seconds": round(time.monotonic() - start, 3), "memory_peak_mb": peak}


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a child: SIGTERM asks its launcher to kill the program's namespace and reap it (no zombie
    is left to a container's init that never reaps); SIGKILL to the group if it does not answer."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
        return
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_programs(jobs: list[tuple[str | None, str]], limits: CodeEvalConfig = CodeEvalConfig(), workers: int = 4) -> list[dict]:
    """`run_program` on many (code, input_output) pairs, `workers` at a time, in input order, after
    `check_sandbox` (so a strict sandbox that cannot contain refuses before any program runs). Each
    child has its own limits, process count and namespaces: one program cannot starve or kill another."""
    require_harness()
    check_sandbox(limits)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits), jobs))

"""Run model-written programs against their tests, contained. Model output is never executed in this
process: each program runs in its own `python -I` subprocess (reasoning_sft/evaluation/sandbox_child.py) with

- its own session, killed as a whole (`killpg`) at a wall-clock limit; on Linux also its own PID
  namespace, so every process it starts dies with it even after `setsid`;
- CPU time, address space, file size, open files and process count limits (`resource`);
- an empty temporary working directory, the only writable place: on Linux the rest of the
  filesystem is re-mounted read-only in a private mount namespace;
- an environment emptied of everything but what Python needs (no API keys, no W&B key);
- no network: a new network namespace with no interface up;
- when the evaluator runs as root, the program runs as `nobody`, so it can signal no process of ours
  and read no file only root may read.

The namespaces need root or unprivileged user namespaces; where the OS refuses one, the program still
runs under the limits, and each verdict's `isolation` (summed in summaries) says what held. Tests are
graded by LiveCodeBench's own `testing_util.run_test` inside the child, so verdicts are the official
harness's: True per passed test, -2 wrong answer, -3 time limit, -4 runtime error.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
VERDICTS = ("passed", "wrong answer", "timeout", "runtime error", "no code")


@dataclass(frozen=True)
class Limits:
    timeout_seconds: int = 6          # per test, as LiveCodeBench's default
    memory_mb: int = 4096             # address space (LiveCodeBench's guard comment: 4 GB)
    file_mb: int = 16                 # largest file the program may write
    processes: int = 64               # processes and threads of the sandbox user


def _verdict(results: list, meta: dict) -> str:
    if results and all(r is True for r in results):
        return "passed"
    code = meta.get("error_code")
    if code is None:   # call-based wrong answers are recorded as False in the results
        codes = [r for r in results if r is not True]
        code = -2 if codes and codes[0] is False else (codes[0] if codes else -4)
    return {-2: "wrong answer", -3: "timeout", -1: "timeout"}.get(code, "runtime error")


def require_harness() -> None:
    """LiveCodeBench's grading code must be importable (`make install` puts it in the venv)."""
    import importlib.util

    from reasoning_sft.errors import ConfigError
    if importlib.util.find_spec("livecodebench") is None:
        raise ConfigError("code evaluation grades with LiveCodeBench's own testing_util: "
                          "pip install --no-deps nvidia-livecodebench==26.3 (its grading needs only numpy)")


def run_program(code: str | None, input_output: str, limits: Limits = Limits()) -> dict:
    """Grade one program on one problem (`input_output`: LiveCodeBench's JSON of inputs, outputs and
    fn_name). Returns {verdict, results, metadata, isolation, seconds}."""
    if not code or not code.strip():
        return {"verdict": "no code", "results": [], "metadata": {}, "isolation": {}, "seconds": 0.0}
    n_tests = len(json.loads(input_output)["inputs"])
    wall = (limits.timeout_seconds + 1) * n_tests + 5          # LiveCodeBench's global timeout
    workdir = tempfile.mkdtemp(prefix="rsft-sandbox-")
    if os.geteuid() == 0:
        os.chown(workdir, 65534, 65534)                         # the program runs as nobody
    nonce = secrets.token_hex(8)
    job = {"code": code, "input_output": input_output, "timeout": limits.timeout_seconds, "workdir": workdir,
           "nonce": nonce, "limits": {"cpu_seconds": wall, "memory_bytes": limits.memory_mb << 20,
                                      "file_bytes": limits.file_mb << 20, "processes": limits.processes}}
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir,
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-I", str(CHILD), str(write_fd)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir, env=env,
                                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        write_fd = -1
        try:
            proc.communicate(json.dumps(job).encode(), timeout=wall)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc)
        with os.fdopen(read_fd, "r", errors="replace") as f:
            read_fd = -1
            lines = [line for line in f.read(1 << 20).splitlines() if line.startswith(nonce)]
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = round(time.monotonic() - start, 3)
    if not lines:   # killed before it could answer: the wall clock, the CPU limit, or the program itself
        reason = "timeout" if timed_out or proc.returncode in (-signal.SIGKILL, -signal.SIGXCPU) else "runtime error"
        return {"verdict": reason, "results": [-1 if reason == "timeout" else -4] * n_tests,
                "metadata": {"error_message": "global timeout" if timed_out else f"exit status {proc.returncode}"},
                "isolation": {}, "seconds": seconds}
    out = json.loads(lines[-1][len(nonce):])
    return {"verdict": _verdict(out["results"], out["metadata"]), "results": out["results"],
            "metadata": out["metadata"], "isolation": out.get("isolation", {}), "seconds": seconds}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_programs(jobs: list[tuple[str | None, str]], limits: Limits = Limits(), workers: int = 4) -> list[dict]:
    """`run_program` on many (code, input_output) pairs, `workers` at a time, in input order. Each
    child has its own limits and process group, so one program cannot starve or kill the others."""
    require_harness()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits), jobs))

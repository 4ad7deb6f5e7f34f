"""Code evaluation: LiveCodeBench's grading in the sandbox, equal to the official harness, and hostile
programs contained."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from code_problems import problems, response, solutions
from conftest import ROOT
from reasoning_sft.evaluation.code_tasks import decode_tests, extract_code, in_window, problem_from_row, problem_prompt
from reasoning_sft.errors import DataError
from reasoning_sft.evaluation.sandbox import Limits, run_program, run_programs

FAST = Limits(timeout_seconds=1, memory_mb=1024, processes=32)
EXPECTED = {"good": "passed", "wrong": "wrong answer", "slow": "timeout", "crash": "runtime error"}


@pytest.fixture(scope="module")
def bundled():
    rows = problems()
    return {r["question_id"]: problem_from_row(r, r["question_id"]) for r in rows}


def test_bundled_problems_grade_as_known(bundled):
    sols = solutions()
    jobs = [(pid, kind, sols[pid][kind]) for pid in bundled for kind in EXPECTED]
    verdicts = run_programs([(code, bundled[pid].input_output) for pid, _, code in jobs], FAST, workers=2)
    assert len(bundled) == 12 and sum(not p.is_stdin for p in bundled.values()) == 4
    for (pid, kind, _), v in zip(jobs, verdicts):
        assert v["verdict"] == EXPECTED[kind], (pid, kind, v)


def test_verdicts_equal_the_official_harness_run_unsandboxed(bundled):
    """LiveCodeBench's own check_correctness (its multiprocessing path, no sandbox) on the same programs."""
    from livecodebench.evaluation.compute_code_generation_metrics import check_correctness
    sols = solutions()
    for pid, problem in bundled.items():
        for kind in ("good", "wrong", "crash"):
            theirs, _ = check_correctness({"input_output": problem.input_output}, sols[pid][kind], timeout=2, debug=False)
            ours = run_program(sols[pid][kind], problem.input_output, FAST)
            assert ours["results"] == [r if isinstance(r, bool) else int(r) for r in theirs], (pid, kind)


def test_released_private_tests_decode_without_unpickling_objects(tmp_path):
    rows = problems()
    assert len(decode_tests(rows[1]["private_test_cases"], "row 1")) == 2          # pickled, as released
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    import base64
    import pickle
    import zlib
    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(DataError, match="refused: the pickle references"):
        decode_tests(evil, "evil.jsonl:1")
    assert not marker.exists()


def test_prompt_code_extraction_and_release_window(bundled):
    sum2, twosum = bundled["sum2"], bundled["twosum"]
    assert problem_prompt(sum2).startswith("Generate an executable Python function generated from the given prompt. "
                                           "The function should take stdin as input")
    assert problem_prompt(twosum).endswith(twosum.starter_code) and "Return the function body" in problem_prompt(twosum)
    text = response("print(1)")
    assert extract_code(text, "skyt1") == "print(1)"                      # the answer's block, not the draft
    assert extract_code("<|begin_of_thought|>\n```python\nprint(2)\n```", "skyt1") is None   # never left thinking
    assert extract_code(response("print(3)", "r1"), "r1") == "print(3)"
    assert in_window(sum2, "2024-01-01", "2024-01-31") and not in_window(sum2, "2024-02-01", None)


# --- hostile programs: each contained, with a verdict and a reason -------------------------------

ONE = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"], "fn_name": None})


def _nobody_processes() -> list[str]:
    out = subprocess.run(["ps", "-u", "65534", "-o", "pid=,cmd="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_infinite_loop_times_out():
    v = run_program("while True:\n    pass", ONE, FAST)
    assert v["verdict"] == "timeout" and "Time Limit" in v["metadata"]["error_message"]


def test_fork_bomb_is_bounded_and_leaves_nothing():
    bomb = "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()"
    start = time.monotonic()
    v = run_program(bomb, ONE, FAST)
    assert v["verdict"] == "timeout" and time.monotonic() - start < 15
    time.sleep(0.5)
    assert _nobody_processes() == []


def test_escaped_session_dies_with_the_sandbox():
    code = ("import ctypes, time\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    libc.setsid()\n"
            "    time.sleep(1000)\nprint(4)")
    v = run_program(code, ONE, FAST)
    assert v["verdict"] == "wrong answer"
    time.sleep(0.5)
    assert _nobody_processes() == []


def test_memory_hog_is_stopped():
    v = run_program("x = bytearray(8 * 1024 ** 3)\nprint(3)", ONE, FAST)
    assert v["verdict"] == "runtime error" and "MemoryError" in v["metadata"]["error"]


def test_writing_outside_its_directory_changes_nothing(tmp_path):
    targets = ["/tmp/rsft-sandbox-escape", str(ROOT / "rsft-escape"), str(tmp_path / "escape"), "/dev/shm/rsft-escape"]
    # os.open: LiveCodeBench's harness mocks builtins.open for stdin programs, the OS call is the real test
    code = "import os\n" + "\n".join(
        f"try:\n    os.write(os.open({t!r}, os.O_CREAT | os.O_WRONLY), b'x')\nexcept OSError as e:\n    print(e)"
        for t in targets)
    code += "\nos.write(os.open('inside.txt', os.O_CREAT | os.O_WRONLY), b'fine')\nprint(os.listdir('.'))"
    v = run_program(code, ONE, FAST)
    assert v["verdict"] == "wrong answer" and "inside.txt" in v["metadata"]["output"]
    assert v["metadata"]["output"].count("Read-only file system") + v["metadata"]["output"].count("Permission denied") == 4
    assert not any(os.path.exists(t) for t in targets)


def test_environment_and_other_processes_hold_no_keys(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-wandb-value")
    monkeypatch.setenv("OPENAI_API_KEY", "secret-openai-value")
    code = ("import os, glob\nseen = [f'{k}={v}' for k, v in os.environ.items()]\n"
            "for f in glob.glob('/proc/*/environ'):\n    try:\n        seen.append(open(f, 'rb').read().decode(errors='ignore'))\n"
            "    except OSError:\n        pass\nprint(' '.join(seen))")
    v = run_program(code, ONE, FAST)
    assert v["verdict"] == "wrong answer"
    assert "secret-" not in v["metadata"]["output"] and "PATH=" in v["metadata"]["output"]


def test_no_network_connection_reaches_the_host():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    got = []

    def accept():
        try:
            conn, _ = server.accept()
            got.append(conn.recv(100))
        except OSError:
            pass
    t = threading.Thread(target=accept)
    t.start()
    v = run_program(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                    "s.sendall(b'leak')\nprint(3)", ONE, FAST)
    t.join()
    server.close()
    assert got == [] and v["verdict"] == "runtime error"


def test_killing_its_parent_fails_and_others_finish(bundled):
    killer = ("import ctypes, os\nlibc = ctypes.CDLL(None)\nfor pid in [os.getppid(), 1, 0, -1] + list(range(2, 3000)):\n"
              "    libc.kill(pid, 9)\nprint('still here')")
    good = solutions()["sum2"]["good"]
    verdicts = run_programs([(killer, ONE), (good, bundled["sum2"].input_output), ("while True: pass", ONE),
                             (good, bundled["sum2"].input_output)], FAST, workers=4)
    assert [v["verdict"] for v in verdicts] == ["wrong answer", "passed", "timeout", "passed"]
    assert os.getppid() > 1   # this test process and its parent live on


def test_grade_stage_grades_code_as_written(tmp_path):
    """python -m reasoning_sft.grade input=FILE task=livecodebench fields.response=response"""
    sols = solutions()
    rows, expected = [], []
    for row in problems():
        for kind in ("good", "wrong"):
            rows.append({**row, "response": response(sols[row["question_id"]][kind])})
            expected.append(kind == "good")
    rows.append({**problems()[0], "response": "<|begin_of_thought|>\nstill thinking"})
    expected.append(False)
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    subprocess.run([sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=livecodebench",
                    "fields.response=response", "code.timeout_seconds=2", f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    graded = [json.loads(line) for line in open(tmp_path / "run" / "graded.jsonl")]
    assert [g["correct"] for g in graded] == expected
    assert [g["question_id"] for g in graded] == [r["question_id"] for r in rows]          # input order
    assert {g["grading"] for g in graded} == {"passed", "wrong answer", "truncated"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["grade"]
    assert summary["num_problems"] == 12 and summary["pass@1"] == pytest.approx(12 / 25 * 25 / 12 * 0.5, abs=0.05)
    assert summary["grading"] == {"passed": 12, "wrong answer": 12, "truncated": 1}


def _problem_file(tmp_path):
    path = tmp_path / "lcb_problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in problems()))
    return path


@pytest.mark.slow
def test_livecodebench_through_lm_eval_runs_each_answer_in_the_sandbox(make_cfg, tiny_tokenizer, tmp_path):
    from test_lm_eval import _always_answers

    from reasoning_sft.evaluation.lm_eval_adapter import run_tasks
    from reasoning_sft.training.models import build_tiny_model
    model = build_tiny_model(tiny_tokenizer).eval()
    cfg = make_cfg(["eval=code", f"eval.code.path={_problem_file(tmp_path)}", "eval.code.start_date=2024-01-01",
                    "eval.code.end_date=2024-03-31", "eval.code.timeout_seconds=2", "eval.max_new_tokens=64"],
                   config_name="evaluate")
    program = solutions()["sum2"]["good"]
    handle = _always_answers(model, tiny_tokenizer, f"<|im_start|>think\nok\n<|im_start|>answer\n```python\n{program}\n```")
    try:
        results = run_tasks(model, tiny_tokenizer, cfg, tmp_path)
    finally:
        handle.remove()
    rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
    # the release window keeps the three problems dated January to March 2024
    assert sorted(r["gold"] for r in rows) == ["maxn", "rev", "sum2"]
    assert {r["gold"]: r["grading"] for r in rows} == {"sum2": "passed", "rev": "runtime error", "maxn": "runtime error"}
    assert all(r["extracted"] == program for r in rows)
    s = results["livecodebench"]
    assert s["accuracy"] == pytest.approx(1 / 3) and s["lm_eval"]["exact_match,none"] == pytest.approx(1 / 3)
    assert s["grading"] == {"passed": 1, "runtime error": 2}


@pytest.mark.slow
def test_the_documented_code_evaluation_command(tmp_path, tiny_tokenizer):
    from reasoning_sft.training.models import build_tiny_model
    model = build_tiny_model(tiny_tokenizer)
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={tmp_path}/model", "eval=code",
         "eval.tasks=[livecodebench]", f"eval.code.path={_problem_file(tmp_path)}",
         "eval.limit=2", "eval.max_new_tokens=8", "logger=none", f"hydra.run.dir={tmp_path}/run"],  # CPU-sized
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["eval"]["livecodebench"]
    assert summary["num_problems"] == 2 and summary["accuracy"] == 0.0   # an untrained model writes no program

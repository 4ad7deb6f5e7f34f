"""Code evaluation: LiveCodeBench's grading in the sandbox, equal to the official harness, and hostile
programs contained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from code_problems import problems, response, solutions
from conftest import ROOT
from reasoning_sft.evaluation.code_tasks import decode_tests, extract_code, in_window, problem_from_row, problem_prompt
from reasoning_sft.errors import DataError
from hostile_programs import USER, as_user, programs as hostile_programs
from reasoning_sft.schema import CodeEvalConfig as Limits
from reasoning_sft.evaluation.sandbox import run_program, run_programs

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


# --- hostile programs (tests/hostile_programs.py), run as root and as an unprivileged user -------------

ONE = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"], "fn_name": None})


def _user_namespaces_for(uid: int) -> str | None:
    """None when `uid` can create user namespaces here, else why not."""
    probe = subprocess.run(as_user(["unshare", "--user", "true"], uid), capture_output=True, text=True)
    return None if probe.returncode == 0 else probe.stderr.strip()


@pytest.fixture
def open_tmp():
    """A directory an unprivileged uid can reach (pytest's own are under a 0700 dir of root's)."""
    import shutil
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="rsft-open-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Started as root (as CI runs it), both evaluators; started as a user, that user is the unprivileged one.
EVALUATORS = ["root", "user"] if os.geteuid() == 0 else ["user"]
ME = USER if os.geteuid() == 0 else os.geteuid()


@pytest.fixture(scope="module", params=EVALUATORS)
def hostile(request):
    """Every hostile program run by an evaluator that planted its secrets first (hostile_programs.main),
    as root or as an unprivileged uid; what the evaluator saw afterwards."""
    import tempfile
    out = Path(tempfile.mkdtemp(prefix=f"rsft-hostile-{request.param}-"))
    out.chmod(0o777)
    argv = [sys.executable, str(ROOT / "tests" / "hostile_programs.py"), str(out / "result.json")]
    if request.param == "user":
        reason = _user_namespaces_for(ME)
        assert reason is None, f"uid {ME} cannot create user namespaces here: {reason}"
        argv = as_user(argv)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()
    out.rmdir()
    assert result["me"] == (0 if request.param == "root" else ME)
    return result


def _out(v: dict) -> str:
    return str(v["metadata"].get("output", ""))


def test_a_forged_verdict_or_a_corrupted_channel_is_a_runtime_error_never_a_pass(hostile):
    v = hostile["verdicts"]
    # old-format verdicts, guesses at ours, and a result for a later test, written to every descriptor
    assert v["forge_verdict"]["verdict"] == "runtime error" and "corrupted its result channel" in \
        v["forge_verdict"]["metadata"]["error_message"]
    assert v["garbage_channel"]["verdict"] == "runtime error"
    assert v["deep_channel"]["verdict"] == "runtime error"      # nested too deep to parse: still a verdict
    # the expected outputs never enter the program's process
    assert v["find_expected"]["verdict"] == "wrong answer" and _out(v["find_expected"]).strip() == "none"


def test_containment_holds_and_cannot_be_undone_from_inside(hostile):
    v = hostile["verdicts"]
    iso = v["threads_ok"]["isolation"]
    assert iso["missing"] == [] and iso["policy"] == "strict" and iso["no_new_privs"] is True
    assert iso["capabilities"] == "0000000000000000" and iso["uid"] != 0 and iso["root"] == iso["proc"] == "own"
    assert iso["nested_user_namespaces"] == "refused" and iso["keyring"] == "own"
    # mount_setattr, umount of /proc and of its dir, a new tmpfs, a nested user namespace, chroot: all refused
    assert _out(v["undo_mounts"]).count("Operation not permitted") + _out(v["undo_mounts"]).count("No space") == 6
    # ENOENT (not in its root) or EROFS for every path outside; its own dir is writable
    assert "WROTE" not in _out(v["write_outside"]) and "inside.txt" in _out(v["write_outside"])
    assert hostile["escaped"] == [] and hostile["host_dir"] == ["rsft.sock", "secret.txt"]
    # one process in its /proc (itself), no secret in any environ or in the host's readable file
    assert _out(v["read_secrets"]).split() == ["1", "False", "True"]
    # loopback TCP: no route (its own network namespace); the world-writable unix socket: not in its root
    assert _out(v["network"]).strip() == "[101, 2]" and hostile["reached"] == []
    assert _out(v["signals"]).startswith("still here")
    # every mount nosuid, no_new_privs, so the setuid mount(8) cannot mount
    assert _out(v["setuid"]).split()[:3] == ["True", "1", "True"]


def test_nothing_is_shared_with_the_host_or_other_programs(hostile):
    v = hostile["verdicts"]
    assert v["ipc"]["verdict"] == "wrong answer", v["ipc"]
    made = _out(v["ipc"]).split()[-1]
    assert _out(v["ipc"]).startswith("-1 No such file") and made == "20"   # the host's queue is not there
    assert hostile["shm_left"] == 0 and hostile["queue_intact"]            # its 20 x 16 MB died with it
    assert hostile["key_intact"] and _out(v["keyring_read"]).strip() == str([""] * 6)
    assert _out(v["keyring_plant"]).strip() == "planted -1"                # the keyring calls refused (seccomp)
    # past the namespaces: no vsock socket, no lock or inotify watch on the files every sandbox shares
    assert _out(v["vsock"]).strip() == "97"                                 # EAFNOSUPPORT
    assert _out(v["file_locks"]).strip() == "[1, 1, 1]"                     # EPERM: flock, POSIX and OFD locks
    assert _out(v["inotify"]).strip() == "-1 Operation not permitted"
    # its own process count: a fork bomb (posix.fork: LiveCodeBench's guard only removes os.fork)
    # in one worker while a 16-thread solution passes in another
    assert v["fork_bomb"]["verdict"] == "timeout" and v["threads_ok"]["verdict"] == "passed"
    # a daemon holding the channel open is gone with the namespace; nothing of any program runs on
    assert v["daemon"]["verdict"] == "wrong answer" and v["daemon"]["seconds"] < 10
    assert hostile["left_running"] == [] and "daemon-was-here" not in hostile["host_dir"]
    # disk: the 64 MB tmpfs is full (ENOSPC), however many files; memory: the address-space limit
    assert _out(v["disk"]).split() == ["64", "28"]
    assert v["memory"]["verdict"] == "runtime error" and "MemoryError" in v["memory"]["metadata"]["error"]
    # memory per program (a cgroup of its own): 1.25 GB of memfds, 12 children x 200 MB, under 1024 MB:
    # neither gets it all (the kernel kills inside the program's group, or, on a busy machine, the clock
    # stops it first), the group never held more than the limit, and the evaluator went on
    for hog in ("memfd_hog", "fork_hog"):
        assert v[hog]["verdict"] != "passed" and v[hog]["isolation"]["cgroup"] in ("v1", "v2"), v[hog]
        assert 0 < v[hog]["memory_peak_mb"] <= 1024, v[hog]


def test_a_user_without_a_cgroup_to_give_is_refused_under_strict(open_tmp):
    """As a user whose cgroup delegates nothing (no memory cgroup per program can be made): strict refuses
    in one line naming it, before a run dir; weak runs and records it."""
    path = open_tmp / "lcb.jsonl"
    path.write_text(json.dumps({**problems()[0], "response": response("print(3)")}) + "\n")
    path.chmod(0o644)
    grade = [sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=livecodebench",
             "fields.response=response", "code.timeout_seconds=2"]
    if os.geteuid() != 0:   # started as a user: this user's own cgroup decides which promise is tested
        from reasoning_sft.evaluation.cgroups import make
        group, _ = make(64 << 20, 8)
        if group is not None:   # it delegates: strict runs every program in a group of its own
            group.remove()
            ran = subprocess.run(grade + [f"hydra.run.dir={open_tmp}/strict"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=300)
            assert ran.returncode == 0, ran.stderr[-2000:]
            isolation = json.loads((open_tmp / "strict" / "summary.json").read_text())["grade"][
                "sandbox_isolation"][0]["isolation"]
            assert isolation["missing"] == [] and isolation["cgroup"] in ("v1", "v2")
            return
    refused = subprocess.run(as_user(grade + [f"hydra.run.dir={open_tmp}/strict"], cgroup=False), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    said = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(said) == 1, refused.stderr[-2000:]
    assert "cannot contain programs here: no memory cgroup of its own" in said[0] and "Delegate=yes" in said[0]
    assert not (open_tmp / "strict").exists()
    weak = subprocess.run(as_user(grade + ["code.sandbox=weak", f"hydra.run.dir={open_tmp}/weak"], cgroup=False),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert weak.returncode == 0, weak.stderr[-2000:]
    isolation = json.loads((open_tmp / "weak" / "summary.json").read_text())["grade"]["sandbox_isolation"][0]["isolation"]
    assert [m.split(" (")[0] for m in isolation["missing"]] == ["memory cgroup of its own"]


def test_where_containment_cannot_be_established_strict_refuses_before_any_program(open_tmp):
    """uid 1000 inside a user namespace that allows no nested one: the grade stage refuses in one line,
    before a run dir; code.sandbox=weak runs and records the weak isolation in its summary."""
    tmp_path = open_tmp
    marker = tmp_path / "ran"
    rows = [{**problems()[0], "response": response(f"open({str(marker)!r}, 'w').write('x')\nprint(3)")}]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path.chmod(0o644)
    no_userns = ["unshare", "--user", f"--map-user={ME}", f"--map-group={os.getegid() if os.geteuid() else ME}",
                 "--keep-caps", "sh", "-c",
                 "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --inh-caps=-all --ambient-caps=-all "
                 '--bounding-set=-all "$@"', "sh"]
    grade = [sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=livecodebench",
             "fields.response=response", "code.timeout_seconds=2"]
    refused = subprocess.run(as_user(no_userns + grade + [f"hydra.run.dir={tmp_path}/strict"]), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    said = refused.stderr.strip().splitlines()
    assert len(said) == 1 and "cannot contain programs here: no namespaces" in said[0] and "code.sandbox=weak" in said[0]
    assert not (tmp_path / "strict").exists() and not marker.exists()
    weak = subprocess.run(as_user(no_userns + grade + ["code.sandbox=weak", f"hydra.run.dir={tmp_path}/weak"]),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert weak.returncode == 0, weak.stderr[-2000:]
    summary = json.loads((tmp_path / "weak" / "summary.json").read_text())["grade"]
    assert summary["sandbox"] == "weak" and summary["sandbox_isolation"][0]["isolation"]["policy"] == "weak"
    assert summary["sandbox_isolation"][0]["isolation"]["missing"]


def test_infinite_loop_times_out():
    v = run_program("while True:\n    pass", ONE, FAST)
    assert v["verdict"] == "timeout" and "Time Limit" in v["metadata"]["error_message"]


def test_returned_values_compare_as_plain_data():
    """Call-based results cross as tagged data: tuples, sets and int keys keep their types (so `==` is
    LiveCodeBench's), and an object with a crafted __eq__ is opaque: it equals nothing."""
    io = json.dumps({"inputs": ["1"], "outputs": ["[1, 2]"], "fn_name": "f"})
    verdict = lambda body: run_program("class Solution:\n    def f(self, x):\n" + body, io, FAST)["verdict"]  # noqa: E731
    assert verdict("        return (1, 2)") == "passed"                 # a top-level tuple: a list, as LCB
    assert verdict("        return [1, 2.0]") == "passed"
    assert verdict("        return {1, 2}") == "wrong answer"
    crafted = "        class Any:\n            def __eq__(self, o):\n                return True\n        return Any()"
    assert verdict(crafted) == "wrong answer"
    io_keys = json.dumps({"inputs": ["1"], "outputs": ['{"1": 2}'], "fn_name": "f"})
    assert run_program("class Solution:\n    def f(self, x):\n        return {1: 2}", io_keys, FAST)["verdict"] \
        == "wrong answer"                                              # {1: 2} != {"1": 2}, as in LCB


def test_a_zlib_bomb_in_private_tests_is_refused_naming_the_row():
    import base64
    import pickle
    import zlib
    bomb = base64.b64encode(zlib.compress(pickle.dumps("[" + " " * (300 << 20) + "]"), 9)).decode()
    assert len(bomb) < 1 << 20
    with pytest.raises(DataError, match=r"lcb.jsonl:7: private_test_cases inflates to more than 256 MB"):
        decode_tests(bomb, "lcb.jsonl:7")


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_grade_stage_grades_code_as_written(evaluator, open_tmp):
    """python -m reasoning_sft.grade input=FILE task=livecodebench fields.response=response
    as root and as an unprivileged user, with hostile programs among the rows: every row graded."""
    sols = solutions()
    rows, expected = [], []
    for row in problems():
        for kind in ("good", "wrong"):
            rows.append({**row, "response": response(sols[row["question_id"]][kind])})
            expected.append(kind == "good")
    rows.append({**problems()[0], "response": "<|begin_of_thought|>\nstill thinking"})
    expected.append(False)
    hostile = {"forge_verdict", "garbage_channel", "daemon", "fork_bomb"}
    progs = {k: v for k, v in hostile_programs({"dir": "/nonexistent", "file": "/nonexistent", "socket": "/x",
                                                "port": 1, "msg_key": 1, "pid": 1}).items() if k in hostile}
    for name, (code, _) in progs.items():
        rows.append({**problems()[0], "response": response(code)})
        expected.append(False)
    tmp_path = open_tmp
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path.chmod(0o644)
    argv = [sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=livecodebench",
            "fields.response=response", "code.timeout_seconds=2", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(as_user(argv) if evaluator == "user" else argv, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    graded = [json.loads(line) for line in open(tmp_path / "run" / "graded.jsonl")]
    assert [g["correct"] for g in graded] == expected
    assert [g["question_id"] for g in graded] == [r["question_id"] for r in rows]          # input order
    assert {g["grading"] for g in graded} == {"passed", "wrong answer", "truncated", "runtime error", "timeout"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["grade"]
    assert summary["num_problems"] == 12 and summary["grading"] == \
        {"passed": 12, "wrong answer": 13, "truncated": 1, "runtime error": 2, "timeout": 1}
    assert summary["sandbox"] == "strict" and all(not i["isolation"]["missing"] for i in summary["sandbox_isolation"])


def _problem_file(tmp_path):
    path = tmp_path / "lcb_problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in problems()))
    return path


@pytest.mark.slow
def test_livecodebench_through_lm_eval_runs_each_answer_in_the_sandbox(make_cfg, tiny_tokenizer, tmp_path):
    from test_lm_eval import _always_answers

    from conftest import evaluator_for
    from reasoning_sft.training.models import build_tiny_model
    model = build_tiny_model(tiny_tokenizer).eval()
    cfg = make_cfg(["eval=code", f"eval.code.path={_problem_file(tmp_path)}", "eval.code.start_date=2024-01-01",
                    "eval.code.end_date=2024-03-31", "eval.code.timeout_seconds=2", "eval.max_new_tokens=64"],
                   config_name="evaluate")
    program = solutions()["sum2"]["good"]
    handle = _always_answers(model, tiny_tokenizer, f"<|im_start|>think\nok\n<|im_start|>answer\n```python\n{program}\n```")
    try:
        results = evaluator_for(cfg, model, tiny_tokenizer).run(tmp_path)
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
    # the evaluate path says how contained its programs were, as the grade stage does
    assert s["sandbox"] == "strict" and sum(i["programs"] for i in s["sandbox_isolation"]) == 3
    assert all(not i["isolation"]["missing"] and i["isolation"]["no_new_privs"] for i in s["sandbox_isolation"])
    assert all(r["sandbox"]["policy"] == "strict" for r in rows)


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


ESCAPER = """import os, posix, time
for _ in range(3):                 # grandchildren, each trying for a session of its own, then a spinner
    if posix.fork() == 0:
        try:
            os.setsid()            # refused by the seccomp filter; before it, it worked
        except OSError:
            pass
        if posix.fork() == 0:
            while True:
                time.sleep(0.5)
        os._exit(0)
while True:
    pass
"""


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to `pid` (read from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_nothing_outlives_a_killed_grade_stage(evaluator, sig, open_tmp):
    """The grade stage killed while a program runs (a scheduler's time limit: SIGTERM; the OOM killer:
    SIGKILL): the program, its children in sessions of their own and the launcher all go within seconds
    (parent-death signals armed again after every credential change, pid 1 watching its launcher)."""
    import signal
    import time
    path = open_tmp / "lcb.jsonl"
    path.write_text(json.dumps({**problems()[0], "response": response(ESCAPER)}) + "\n")
    path.chmod(0o644)
    argv = [sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=livecodebench",
            "fields.response=response", "code.timeout_seconds=300", f"hydra.run.dir={open_tmp / 'run'}"]
    stage = subprocess.Popen(as_user(argv) if evaluator == "user" else argv, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, seen = time.time() + 120, set()
        while time.time() < deadline and len(seen) < 5:   # the launcher, pid 1 (the spinner), 3 sleepers
            time.sleep(0.5)
            seen = {p for p in _descendants(stage.pid) if "sandbox_child" in _cmdline(p)}
        assert len(seen) >= 5, f"the program did not start its processes: {seen}"
        stage.send_signal(getattr(signal, sig))
        stage.wait(30)
        deadline = time.time() + 10
        while any(_running(p) for p in seen) and time.time() < deadline:
            time.sleep(0.2)
        assert not [p for p in seen if _running(p)], f"left running after {sig} to the grade stage"
    finally:
        if stage.poll() is None:
            stage.kill()
        for p in _descendants(stage.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


TYPED_RETURNS = [   # (what the function returns, the expected output as LiveCodeBench stores it)
    ("collections.Counter('a')", '{"a": 1}'),
    ("collections.Counter('ab') - collections.Counter('b')", '{"a": 1}'),
    ("collections.Counter('a')", '["a"]'),
    ("collections.OrderedDict([('a', 1), ('b', 2)])", '{"b": 2, "a": 1}'),
    ("collections.defaultdict(int, {'a': 1})", '{"a": 1}'),
    ("decimal.Decimal('0.5')", "0.5"),
    ("decimal.Decimal('0.1')", "0.1"),
    ("numpy.bool_(True)", "true"),
    ("numpy.bool_(True)", "[true]"),
    ("numpy.int64(3)", "[3]"),
    ("numpy.float64(0.5)", "0.5"),
    ("numpy.float32(0.1)", "0.1"),
    ("numpy.array([3])", "3"),
    ("numpy.array([[1, 2], [3, 4]])", "[[1, 2], [3, 4]]"),
    ("numpy.array([1, 2])", "[1, 2, 3]"),
    ("numpy.array([], dtype=int)", "[]"),
    ("numpy.array(['a', 'b'])", '["a", "b"]'),
    ("[numpy.int64(1), collections.Counter('a')]", '[1, {"a": 1}]'),
]


def test_returned_types_compare_as_livecodebench_compares_them():
    """Counter, OrderedDict, defaultdict, Decimal, numpy scalars and arrays: each rebuilt as itself by the
    evaluator (never the program's object), so `prediction == expected` and its truth value are those
    of LiveCodeBench's own grade_call_based, run unsandboxed on the same program: the same tests recorded,
    the same pass or fail (a numpy array of several elements: its runtime error)."""
    import numpy as np
    from livecodebench.evaluation.compute_code_generation_metrics import check_correctness
    verdicts = []
    for value, gold in TYPED_RETURNS:
        code = f"import collections, decimal, numpy\nclass Solution:\n    def f(self, x):\n        return {value}\n"
        io = json.dumps({"inputs": ["1"], "outputs": [gold], "fn_name": "f"})
        theirs, _ = check_correctness({"input_output": io}, code, timeout=2, debug=False)
        # as their scorer fixes them (evaluate_generations_by_problem: an array's first element; an empty
        # array has none: its item(0) raises there and the generation fails)
        theirs = [(bool(r.item(0)) if r.size else False) if isinstance(r, np.ndarray)
                  else bool(r) if isinstance(r, np.bool_) else r for r in theirs]
        ours = run_program(code, io, FAST)
        assert ours["results"] == theirs, (value, gold, ours, theirs)
        assert (ours["verdict"] == "passed") == all(r is True or (r > 0) for r in theirs), (value, gold)
        verdicts.append(ours["verdict"])
    # numpy 2 compares float32(0.1) with 0.1 as float32 (NEP 50): equal, there as here
    assert verdicts == ["passed", "passed", "wrong answer", "passed", "passed", "passed", "wrong answer", "passed",
                        "passed", "passed", "passed", "passed", "passed", "runtime error", "runtime error",
                        "runtime error", "runtime error", "passed"]


CHANNEL_ATTACKS = {   # a line the program writes on every descriptor (the channel among them), as test 0's result
    "colliding_set": "'{\"test\": 0, \"value\": {\"$s\": [' + ','.join(str(k * (2 ** 61 - 1)) for k in range(60000))"
                     " + ']}}\\n'",
    "colliding_keys": "'{\"test\": 0, \"value\": {\"$d\": [' + ','.join(f'[{k * (2 ** 61 - 1)}, 0]' for k in "
                      "range(60000)) + ']}}\\n'",
    "empty_lists": "'{\"test\": 0, \"value\": [' + '[],' * 5000000 + '0]}\\n'",
}
# 15 MB without a newline, 4 KB at a time: the evaluator reads it in small chunks, as a slow writer sends it
NO_NEWLINE = ("import os\nfor fd in range(0, 64):\n    try:\n        for _ in range(3840):\n"
              "            os.write(fd, b'x' * 4096)\n    except OSError:\n        pass\n")


@pytest.mark.parametrize("attack", sorted(CHANNEL_ATTACKS) + ["no_newline"])
def test_what_a_program_writes_costs_the_evaluator_little(attack, tmp_path):
    """Issue 38: 60,000 ints that all hash alike as a set or as dict keys (rebuilt in the evaluator they
    held the GIL for tens of seconds), a line of 5 million empty lists (865 MB to build), 15 MB without a
    newline (seconds of searching): each is a runtime error within seconds, the evaluator's memory
    bounded; measured in an evaluator process of its own."""
    from hostile_programs import to_every_fd
    code = (NO_NEWLINE if attack == "no_newline" else to_every_fd(CHANNEL_ATTACKS[attack])) + \
        "import time\ntime.sleep(3)\n"
    io = json.dumps({"inputs": ["1"], "outputs": ["[1]"], "fn_name": "f"}) if attack != "no_newline" else ONE
    if attack != "no_newline":
        code = "class Solution:\n    def f(self, x):\n" + "".join(f"        {line}\n" for line in code.splitlines()) + \
               "        return [1]\n"
    script = ("import json, resource, sys, time\nfrom reasoning_sft.schema import CodeEvalConfig\n"
              "from reasoning_sft.evaluation.sandbox import run_program\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "t = time.process_time()\n"
              f"v = run_program(sys.stdin.read(), {io!r}, CodeEvalConfig(timeout_seconds=20, memory_mb=2048))\n"
              "print(json.dumps({'verdict': v['verdict'], 'cpu': time.process_time() - t, "
              "'grew_mb': (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "
              "'message': v['metadata'].get('error_message', '')}))\n")
    proc = subprocess.run([sys.executable, "-c", script], input=code, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if attack.startswith("colliding"):   # decoded in linear time: a set or int-keyed dict equals no JSON value
        assert out["verdict"] == "wrong answer", out
    else:
        assert out["verdict"] == "runtime error" and "corrupted its result channel" in out["message"], out
    # the evaluator's own CPU time, whatever the line held (before: 20-21 s for the colliding values; 0.84 s
    # for 15 MB searched for a newline from the start at every read, 0.06 s now)
    assert out["cpu"] < (0.4 if attack == "no_newline" else 5), out
    assert out["grew_mb"] < 300, out


SPINNERS = """import os, posix
for _ in range(31):                # 31 spinners, each asking for a session (an autogroup) of its own
    if posix.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass
        while True:
            pass
while True:
    pass
"""
HONEST = "total = 0\nfor i in range(12_000_000):\n    total += i & 7\na, b = map(int, input().split())\nprint(a + b)\n"


def test_one_programs_processes_cannot_time_out_another():
    """A program's processes share one session, so the scheduler gives the program one share of the CPU
    (autogroup) however many it starts: an honest program beside 32 spinners takes about the time it
    takes alone (measured here: 0.37 s against 0.40 s alone). Before, each spinner took a session and a
    share of its own: the honest one took 7x as long (2.97 s), and with a tighter limit timed out."""
    limits = Limits(timeout_seconds=6, memory_mb=1024, processes=64)
    alone = run_programs([(HONEST, ONE)], limits)[0]
    spin, honest = run_programs([(SPINNERS, ONE), (HONEST, ONE)], limits, workers=2)
    assert alone["verdict"] == honest["verdict"] == "passed" and spin["verdict"] == "timeout"
    assert honest["seconds"] < 2.5 * alone["seconds"] + 0.5, (honest["seconds"], alone["seconds"])

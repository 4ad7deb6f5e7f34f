"""eval.data_parallel_size: replicas of the engine in processes of their own (evaluation/replicas.py),
merged back exactly: the evaluate stage as users run it, greedy and sampled, in-process tasks and
lm-eval's; a replica that fails is named; replicas die with their evaluator."""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
from conftest import ROOT

from reasoning_sft.evaluation.replicas import ReplicaFailed, ReplicaPool
from reasoning_sft.training.models import build_tiny_model

ENV = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("dp") / "model"
    build_tiny_model(tiny_tokenizer, seed=5).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def evaluate(model, run_dir, *overrides) -> tuple[list[str], dict]:
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={model}", "logger=none",
                           f"hydra.run.dir={run_dir}", *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    return (run_dir / "eval_samples.jsonl").read_text().splitlines(), summary


def same_run(one: tuple, two: tuple) -> None:
    (rows1, summary1), (rows2, summary2) = one, two
    assert rows1 == rows2                       # every row, in the one-replica order, byte for byte
    assert summary1["eval"] == summary2["eval"]  # accuracy, intervals, pass@k / maj@k, token statistics


@pytest.mark.slow
def test_two_replicas_write_what_one_writes_greedy_and_sampled(saved_model, tmp_path):
    """The synthetic task (in-process) with budget forcing: greedy, then sampled with 4 samples per problem
    (pass@4, maj@4), each written identically by one engine and by two replicas; batches of 8 over 24
    problems: replicas take whole batches in turn."""
    greedy = ["eval=synthetic", "eval.num_problems=24", "eval.batch_size=8", "eval.max_new_tokens=40",
              "eval.budget_forcing.enabled=true", "eval.budget_forcing.max_thinking_tokens=24",
              "eval.budget_forcing.num_wait=1"]
    one = evaluate(saved_model, tmp_path / "g1", *greedy)
    same_run(one, evaluate(saved_model, tmp_path / "g2", *greedy, "eval.data_parallel_size=2"))
    assert len(one[0]) == 24 and {json.loads(r)["waits"] for r in one[0]} <= {0, 1}
    sampled = [*greedy, "eval.num_problems=6", "eval.samples_per_problem=4", "eval.ks=[1,4]", "eval.temperature=1.0",
               "eval.top_p=0.95", "eval.top_k=40"]
    one = evaluate(saved_model, tmp_path / "s1", *sampled)
    same_run(one, evaluate(saved_model, tmp_path / "s2", *sampled, "eval.data_parallel_size=2"))
    rows = [json.loads(r) for r in one[0]]
    assert len({r["generation"] for r in rows}) > len(rows) // 2   # samples of a problem differ: seeds per sample
    assert "pass@4" in json.dumps(one[1]["eval"]["synthetic"])


@pytest.mark.slow
def test_two_replicas_through_lm_eval(saved_model, tmp_path, shared_data):
    """The papers' benchmarks through lm-evaluation-harness, sampled (2 samples per problem), batches of 3:
    two replicas write the rows and summaries (lm-eval's own figures included) one engine writes."""
    args = ["eval=benchmarks", "eval.tasks=[amc23,aime24]", "eval.limit=4", "eval.batch_size=3",
            "eval.max_new_tokens=20", "eval.samples_per_problem=2", "eval.temperature=0.8", f"eval.data_dir={shared_data}"]
    one = evaluate(saved_model, tmp_path / "one", *args)
    same_run(one, evaluate(saved_model, tmp_path / "two", *args, "eval.data_parallel_size=2"))
    assert len(one[0]) == 16


def test_replicas_return_results_in_order_and_name_a_failure():
    """The pool itself, on plain functions in real processes: results in the items' order whichever
    replica is free; a replica that raises, cannot build its engine or dies is named, and none is left."""
    with ReplicaPool(int, 2, tokenizer=None, batches_itself=False) as pool:    # the engine: int() == 0
        assert pool.map(operator.add, [(k,) for k in range(7)]) == list(range(7))
        with pytest.raises(ReplicaFailed, match=r"eval.data_parallel_size: replica \d of 2 failed on work item 1: "
                                                r"ZeroDivisionError"):
            pool.map(operator.truediv, [(1,), (0,)])
        procs = list(pool.procs)
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(ReplicaFailed, match="replica 0 of 2 could not load its engine: ValueError"):
        ReplicaPool(partial(int, "not a number"), 2, tokenizer=None, batches_itself=False)
    with ReplicaPool(os.getpid, 1, tokenizer=None, batches_itself=False) as pool:   # the engine: the replica's pid
        with pytest.raises(ReplicaFailed, match=r"replica 0 of 1 died \(exit code -9\)"):
            pool.map(os.kill, [(signal.SIGKILL,)])


def test_replicas_die_with_their_evaluator(tmp_path):
    """SIGKILL to the process that holds the pool (a scheduler's limit, the OOM killer): its replicas go
    too, within seconds (a parent-death signal), rather than holding a GPU with nobody to answer."""
    script = ("import os, sys, time\nfrom reasoning_sft.evaluation.replicas import ReplicaPool\n"
              "pool = ReplicaPool(os.getpid, 2, tokenizer=None, batches_itself=False)\n"
              "print(*[p.pid for p in pool.procs], flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=ENV)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_data_parallel_size_is_checked_before_any_run_dir(tmp_path, saved_model):
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={saved_model}",
                           "eval=synthetic", "eval.data_parallel_size=0", f"hydra.run.dir={tmp_path}/run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode != 0 and "eval.data_parallel_size=0: expected an integer >= 1" in proc.stderr
    assert not (tmp_path / "run").exists()

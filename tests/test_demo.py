"""The demo model end to end: `make demo`'s training, s1's budget forcing on it, `make demo-budget`.

One training of the documented demo (15 to 24 minutes on 2 cores) serves every test here. Its model is
trained into the fixed dir `make demo-budget` reads, so that command runs exactly as written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

DEMO_RUN = ROOT / "outputs" / "train" / "runs" / "demo" / "make-demo-budget"     # the Makefile's DEMO_MODEL
DEMO_BUDGET = ROOT / "outputs" / "evaluate" / "multiruns" / "demo" / "make-demo-budget"

# The first test also trains the demo (its module fixture): setup.cfg's 900 s per test would cut it short
# on a slower machine (it did on one CI machine, and every test here then errored); so did a 3,000 s limit
# on the training in CI, where it runs on one core beside make test. CI's own limit is the one that counts.
pytestmark = [pytest.mark.learning, pytest.mark.timeout(7200)]


@pytest.fixture(scope="module")
def demo():
    shutil.rmtree(DEMO_RUN, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "experiment=demo", f"hydra.run.dir={DEMO_RUN}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=6600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((DEMO_RUN / "summary.json").read_text())


def _evaluate(tmp_path, name, *overrides):
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={DEMO_RUN}/final_model",
                           "logger=none", *overrides, f"hydra.run.dir={tmp_path}/{name}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / name / "eval_samples.jsonl")]
    return json.loads((tmp_path / name / "summary.json").read_text())["eval"]["synthetic"], rows


def test_demo_learns_the_task_on_any_cpu(demo):
    """README and conf/experiment/demo.yaml promise 99.0-100% held-out exact match on any CPU: four epochs
    are past the phase change under each of the three sets of float kernels measured (two epochs were not:
    32.0-89.5% by CPU, benchmarks/README.md)."""
    acc = demo["eval"]["synthetic"]
    assert acc["num_problems"] == 200 and acc["accuracy"] >= 0.95, acc       # lowest measured: 99.0% (97.5-100.0)
    assert acc["grading"].get("truncated", 0) == 0            # every answer left the thinking
    rows = [json.loads(line) for line in open(DEMO_RUN / "eval_samples.jsonl")]
    assert sum(r["correct"] for r in rows) == round(acc["accuracy"] * 200)
    # the thinking's conclusion is the boxed answer: the model answers what it worked out
    concluded = [r for r in rows if f"So the total is {r['extracted']}." in r["generation"]]
    assert len(concluded) >= 0.95 * len(rows)


def test_one_wait_keeps_the_demo_models_accuracy(demo, tmp_path):
    """s1's extension on a model that learnt to re-check after concluding: one "Wait" where the stop
    marker was, a re-check, then the answer; accuracy stays where it was (the two 95% intervals overlap)."""
    plain = demo["eval"]["synthetic"]
    waited, rows = _evaluate(tmp_path, "wait", "eval.budget_forcing.enabled=true", "eval.budget_forcing.num_wait=1")
    assert waited["waits_appended"] >= 0.9 * 200
    assert waited["ci95_low"] <= plain["ci95_high"] and plain["ci95_low"] <= waited["ci95_high"], (waited, plain)
    rechecked = [r for r in rows if "So the total is" in r["generation"] and "\nWait, let me double-check:" in r["generation"]]
    assert len(rechecked) >= 0.9 * len(rows)                  # the model continues its thinking sensibly


def test_make_demo_budget_draws_s1s_curve_and_a_generous_cap_changes_nothing(demo):
    trained_at = (DEMO_RUN / "summary.json").stat().st_mtime
    proc = subprocess.run(["make", "demo-budget"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (DEMO_RUN / "summary.json").stat().st_mtime == trained_at        # the demo model was reused
    by_cap = {}
    for job in (p for p in DEMO_BUDGET.iterdir() if p.name.isdigit()):
        config = (job / "config.yaml").read_text()
        cap = int(config.split("max_thinking_tokens: ")[1].split("\n")[0])
        by_cap[cap] = json.loads((job / "summary.json").read_text())["eval"]["synthetic"]
    assert sorted(by_cap) == [8, 16, 32, 64, 256]
    assert by_cap[8]["accuracy"] < by_cap[64]["accuracy"] and by_cap[8]["capped_share"] == 1.0
    # A cap no trace reaches is no forcing at all: the same accuracy as the demo's plain evaluation.
    assert by_cap[256]["capped_share"] == 0 and by_cap[256]["accuracy"] == demo["eval"]["synthetic"]["accuracy"]
    assert (DEMO_BUDGET / "report" / "thinking_tokens.png").is_file()

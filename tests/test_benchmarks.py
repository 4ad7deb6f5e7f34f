"""Every benchmark in benchmarks/ runs at its smallest size, exactly as a user types it, and prints its
figures: a benchmark nobody runs rots (bench_long_traces read a config key that had moved, unseen).
The figures themselves are machine-dependent; these tests check that each one is measured and is a
number, and that a failed measurement fails the command. The five that train or launch (25-60 s each)
are marked `benchmark` and run in `make test-slow`, which CI runs too."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

R1 = ROOT.parent / "shared" / "data" / "r1_distill_qwen32b_aime_traces.jsonl"
needs_r1 = pytest.mark.skipif(not R1.is_file(), reason=f"needs the bundled R1 traces at {R1} (../shared/data)")
NUMBER = r"[\d,]+(?:\.\d+)?"


def bench(*args: str, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def test_bench_budget_forcing_smoke():
    out = bench("benchmarks/bench_budget_forcing.py", "--problems", "4", "--thinking", "8", "--answer", "4",
                "--batch-size", "4", "--repeats", "1")
    assert re.search(rf"plain generate:\s+{NUMBER} generated tok/s", out), out
    assert re.search(rf"budget forcing:\s+{NUMBER} generated tok/s", out), out
    assert re.search(r"forcing overhead: -?[\d.]+%", out), out
    assert re.search(r"forcing overhead re-reading: -?[\d.]+%", out), out
    assert "same generations with and without the kept KV cache: yes" in out, out


def test_bench_eval_parallel_smoke():
    out = bench("benchmarks/bench_eval_parallel.py", "--problems", "8", "--max-new-tokens", "8", "--batch-size", "2")
    assert re.search(rf"one process \(\d+ threads\): {NUMBER} s, {NUMBER} generated tok/s", out), out
    assert re.search(rf"2 replicas \(\d+ thread\(s\) each\): {NUMBER} s, {NUMBER} generated tok/s", out), out
    assert re.search(rf"speed-up: {NUMBER}x", out), out
    assert "same generations: yes" in out, out


@pytest.mark.benchmark
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed: make install-vllm")
def test_bench_budget_forcing_on_vllm_smoke():
    out = bench("benchmarks/bench_budget_forcing.py", "--backends", "hf,vllm", "--problems", "4", "--thinking", "8",
                "--answer", "4", "--batch-size", "4", "--repeats", "1")
    for backend in ("hf", "vllm"):
        assert re.search(rf"{backend}\s+plain generate:\s+{NUMBER} generated tok/s", out), out
        assert re.search(rf"{backend}\s+budget forcing:\s+{NUMBER} generated tok/s", out), out
    assert re.search(rf"vllm / hf, budget forcing: {NUMBER}x", out), out


@needs_r1
def test_bench_data_prep_smoke():
    out = bench("benchmarks/bench_data_prep.py", "--records", "300")
    assert re.search(rf"ours \(prepare_examples\):\s+{NUMBER} records/s", out), out
    assert re.search(rf"ratio \(tokens/s\):\s+{NUMBER}", out), out


@needs_r1
@pytest.mark.benchmark
def test_bench_long_traces_smoke():
    out = bench("benchmarks/bench_long_traces.py", "--lengths", "256", "--steps", "1")
    for method in ("ours", "trl_padding_free"):
        assert re.search(rf"{method}\s+256 tokens/row: peak RSS\s+{NUMBER} GB\s+{NUMBER} real tok/s", out), out
    assert "failed" not in out


@needs_r1
def test_bench_long_traces_fails_loudly_when_a_run_fails():
    """A length no trace reaches cannot be measured: the command exits non-zero, naming it."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_long_traces.py", "--lengths", "4096", "--steps", "10000",
                           "--methods", "ours"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "ours                 4096: failed" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@needs_r1
@pytest.mark.benchmark
def test_bench_training_smoke():
    out = bench("benchmarks/bench_training.py", "--samples", "4", "--batch", "2", "--max-length", "512",
                "--pack-length", "1024")
    assert re.search(rf"ours / TRL SFTTrainer pad-to-longest: {NUMBER}x", out), out
    assert re.search(rf"ours / TRL SFTTrainer padding_free: {NUMBER}x", out), out


@pytest.mark.benchmark
def test_bench_startup_smoke():
    out = bench("benchmarks/bench_startup.py", "--runs", "1")
    assert re.search(rf"best: .*to_first_step {NUMBER}s", out), out


@pytest.mark.benchmark
def test_bench_zero3_memory_smoke():
    out = bench("benchmarks/bench_zero3_memory.py", "--model", "tiny")
    ratios = re.search(r"2 ranks / 1 rank, per rank: parameters ([\d.]+), optimizer state ([\d.]+)", out)
    assert ratios, out
    assert 0.4 < float(ratios.group(1)) < 0.7 and 0.4 < float(ratios.group(2)) < 0.7, out   # ZeRO-3 halves both

"""A real tiny CPU sweep end to end (with jobs made to fail), its report, and the log-linear fit."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT
from reasoning_sft.report import log_linear_fit, main as report_main
from wandb_files import find_offline_run_file, read_offline_run


def test_log_linear_fit_recovers_a_known_slope():
    rng = random.Random(0)
    xs = [1000 * 1.25 ** i for i in range(12)]                      # 1k .. ~12k tokens, as Long1K
    ys = [0.55 + 0.04 * math.log(x) + rng.gauss(0, 0.005) for x in xs]
    fit = log_linear_fit(xs, ys)
    assert fit.slope == pytest.approx(0.04, abs=0.005)
    assert fit.slope_ci95[0] < 0.04 < fit.slope_ci95[1] and fit.slope_ci95[1] - fit.slope_ci95[0] < 0.01
    assert fit.intercept == pytest.approx(0.55, abs=0.05) and fit.r2 > 0.95 and fit.n == 12
    exact = log_linear_fit([1, math.e, math.e ** 2], [1.0, 3.0, 5.0])
    assert exact.slope == pytest.approx(2.0) and exact.intercept == pytest.approx(1.0) and exact.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 distinct x values"):
        log_linear_fit([5, 5], [0.1, 0.2])


@pytest.mark.slow
def test_tiny_sweep_runs_every_job_records_failures_and_reports(tmp_path):
    sweep = tmp_path / "sweep"
    # 3 sample counts x 2 trace-length buckets; 500 > the 100 samples a bucket holds: those 2 jobs fail.
    cmd = [sys.executable, "-m", "reasoning_sft.train", "-m", "experiment=demo", "experiment_name=tiny_study",
           "data.source.final_check_prob=0.0",
           "data.source.num_problems=400", "data.samples_per_bucket=100", "data.num_samples=40,80,500",
           "data.length_buckets=[[0,75]],[[75,200]]", "trainer.max_steps=3", "trainer.global_batch_size=8",
           "trainer.micro_batch_size=8", "eval.num_problems=8", "eval.max_new_tokens=32", "eval.bootstrap_samples=50",
           f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]     # exit status = failed jobs

    status = json.loads((sweep / "sweep_status.json").read_text())
    assert (status["jobs"], status["finished"], status["failed"]) == (6, 4, 2)
    assert all("data.num_samples=500: only 100 records are left" in f["error"] for f in status["failures"])
    assert "sweep: 4 of 6 jobs finished, 2 failed" in proc.stdout

    # Every finished job ran prepare -> train -> evaluate into its own run dir, logged to W&B as the study.
    finished = [sweep / str(j) for j in range(6) if json.loads((sweep / str(j) / "summary.json").read_text())
                ["status"] == "finished"]
    assert len(finished) == 4
    for job in finished:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["train"]["steps"] == 3 and "synthetic" in summary["eval"]
        assert (job / "eval_samples.jsonl").is_file()
        run = read_offline_run(find_offline_run_file(job))["run"]
        assert run["group"] == "tiny_study" and "data.num_samples=" in run["name"]

    # as users run it: `python -m reasoning_sft.report <sweep dir>` (the file runs as __main__ and hands
    # over to the module its figures registered in)
    cli = subprocess.run([sys.executable, "-m", "reasoning_sft.report", str(sweep)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0 and "report.md" in cli.stdout + cli.stderr, cli.stderr[-2000:]
    assert report_main([str(sweep)]) == 0
    out = sweep / "report"
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert len(rows) == 6
    assert sorted(r["status"] for r in rows) == ["failed"] * 2 + ["finished"] * 4
    assert {r["examples"] for r in rows if r["status"] == "finished"} == {"40", "80"}
    md = (out / "report.md").read_text()
    for fig in ("sample_count", "trace_length"):
        assert (out / f"{fig}.png").stat().st_size > 5000
        assert f"![{fig}]({fig}.png)" in md
    assert len(list(out.glob("*.png"))) == 2
    assert "## Failed or unreadable runs" in md and md.count("data.num_samples=500: only 100 records") == 2
    assert "ln(tokens), R^2 =" in md
    report = json.loads((out / "summary.json").read_text())
    assert report["runs"] == 6 and report["failed"] == 2
    assert report["figures"]["trace_length"]["fits"]["synthetic"]["n"] == 4


def test_report_of_a_path_that_is_not_a_run_is_an_error(tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "nope: no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "neither a run dir" in capsys.readouterr().err


def test_budget_forcing_and_ablation_rows_get_their_figures(tmp_path):
    from reasoning_sft.report import draw_figures, write_report
    base = {"status": "finished", "error": None, "overrides": "", "examples": 100, "num_samples": None,
            "trace_tokens_mean": 500.0, "parameters": 1000, "length_buckets": "null", "target_tokens": None,
            "min_trace_tokens": None, "max_trace_tokens": None, "num_wait": None, "ablation": "none",
            "ablation_rate": None, "max_thinking_tokens": None}
    forced = [{**base, "run": str(i), "overrides": f"eval.budget_forcing.max_thinking_tokens={cap}",
               "max_thinking_tokens": cap, "aime24/accuracy": acc, "aime24/ci95_low": acc - 0.1,
               "aime24/ci95_high": acc + 0.1, "aime24/thinking_tokens_mean": cap * 0.9}
              for i, (cap, acc) in enumerate([(512, 0.2), (1024, 0.3), (2048, 0.4)])]
    figures = draw_figures(forced, tmp_path)
    assert set(figures) == {"thinking_tokens"} and (tmp_path / "thinking_tokens.png").stat().st_size > 5000
    ablated = [{**base, "run": str(i), "ablation": "digit_corruption", "ablation_rate": rate,
                "overrides": f"ablation.rate={rate}", "math500/accuracy": acc}
               for i, (rate, acc) in enumerate([(0.0, 0.5), (0.5, 0.45), (1.0, 0.2)])]
    out = tmp_path / "ablation"
    out.mkdir()
    figures = draw_figures(ablated, out)
    assert set(figures) == {"ablation"}
    _, md = write_report(ablated, out, figures)
    assert "![ablation](ablation.png)" in md.read_text() and "ablation.rate=0.5" in md.read_text()


def test_a_study_at_chance_is_flagged_and_intervals_read_as_numbers(tmp_path):
    from reasoning_sft.report import draw_figures, write_report
    rows = [{"run": str(i), "status": "finished", "error": None, "overrides": f"ablation.rate={rate}",
             "ablation": "digit_corruption", "ablation_rate": rate, "synthetic/accuracy": 0.0,
             "synthetic/ci95_low": 0.0, "synthetic/ci95_high": 0.0} for i, rate in enumerate([0.0, 0.5, 1.0])]
    _, md = write_report(rows, tmp_path, draw_figures(rows, tmp_path))
    text = md.read_text()
    assert "warning: every run scores 0.000 or less on synthetic" in text and "synthetic [0.000, 0.000]" in text
    rows[0].update({"synthetic/accuracy": 0.4, "synthetic/ci95_low": 0.3, "synthetic/ci95_high": 0.5})
    _, md = write_report(rows, tmp_path, draw_figures(rows, tmp_path))
    assert "warning" not in md.read_text()


def test_a_corrupt_run_is_listed_and_the_report_still_written(tmp_path, capsys):
    import json

    from reasoning_sft.report import main
    sweep = tmp_path / "sweep"
    for job, acc in (("0", 0.2), ("1", 0.4), ("2", None)):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "overrides.yaml").write_text(f"- data.num_samples={100 * (int(job) + 1)}\n")
        (sweep / job / "config.yaml").write_text(f"data:\n  num_samples: {100 * (int(job) + 1)}\n")
        summary = {"status": "finished", "eval": {"synthetic": {"accuracy": acc, "ci95_low": 0.0, "ci95_high": 0.5,
                                                                  "num_problems": 10}}}
        (sweep / job / "summary.json").write_text(json.dumps(summary) if acc is not None else '{"status": "fin')
    assert main([str(sweep)]) == 0
    md = (sweep / "report" / "report.md").read_text()
    assert "3 runs: 2 finished, 1 failed" in md
    assert "- `2` (unreadable): summary.json: JSONDecodeError" in md


def test_report_splits_accuracy_by_domain(tmp_path):
    import json

    from reasoning_sft.report import gather_row, write_report
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("experiment_name: skyt1\n")
    (run / "summary.json").write_text(json.dumps({"status": "finished", "eval": {
        "aime24": {"accuracy": 0.4}, "math500": {"accuracy": 0.8}, "livecodebench": {"accuracy": 0.3}}}))
    row = gather_row(run)
    assert row["math_mean"] == pytest.approx(0.6) and row["code_mean"] == pytest.approx(0.3)
    _, md = write_report([row], tmp_path / "report", {})
    header = md.read_text().splitlines()[4]
    assert "math_mean" in header and "code_mean" in header


def test_a_declared_axis_gets_its_figure_and_column(tmp_path):
    """A sweep over ablation.mode (no ablation.rate varies) still gets its bars and a `ablation.mode` column,
    because the sweep file declares it; the declared baseline draws the reference line."""
    from reasoning_sft.report import declared_study, draw_figures, write_report
    rows = [{"run": str(i), "status": "finished", "error": None, "overrides": f"ablation.mode={mode}",
             "ablation": "wrong_answers", "ablation_rate": 1.0, "ablation.mode": mode,
             "study_figure": "ablation", "study_x": "ablation.mode", "study_baseline": "natural",
             "math500/accuracy": acc, "math500/ci95_low": acc - 0.05, "math500/ci95_high": acc + 0.05}
            for i, (mode, acc) in enumerate([("natural", 0.6), ("swap", 0.55), ("perturb", 0.5)])]
    assert declared_study(rows) == {"figure": "ablation", "x": "ablation.mode", "baseline": "natural"}
    figures = draw_figures(rows, tmp_path)
    assert set(figures) == {"ablation"} and (tmp_path / "ablation.png").stat().st_size > 5000
    _, md = write_report(rows, tmp_path, figures)
    header = md.read_text().splitlines()[4]
    assert "| ablation.mode |" in header and "| swap |" in md.read_text()
    undeclared = [{**r, "study_figure": None, "study_x": None, "study_baseline": None} for r in rows]
    assert draw_figures(undeclared, tmp_path) == {}      # undeclared, guessed: neither ablation nor rate varies
    rows[0]["study_figure"] = "histogram"
    with pytest.raises(ValueError, match="report.figure='histogram'"):
        declared_study(rows)

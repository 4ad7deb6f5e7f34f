"""Report: `python -m reasoning_sft.report <sweep dir or run dirs...> [--out DIR] [--wandb-group G]`.

Gathers every job's summary.json (and its config.yaml) into report.csv and report.md, and draws the
papers' figures for what the jobs vary (PNG, embedded in the Markdown):
- accuracy vs training samples (log x): sample-count studies;
- accuracy vs mean trace tokens with a log-linear fit (slope, intercept, R^2, 95% interval), Long1K;
- ablation bars with 95% intervals against the unablated baseline, Sky-T1;
- accuracy vs model size (log x);
- accuracy vs thinking tokens for budget-forcing sweeps, s1.
Failed jobs are rows too (status, error), never dropped.

A sweep file says what it studies (`report: {figure: ablation, x: ablation.mode, baseline: natural}`);
every job's config.yaml carries that block, and the report draws the declared figure over the
declared key (a column of its own) instead of guessing from what varies. Runs without it (ad-hoc
`-m` commands) get the figures their varying keys call for.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from reasoning_sft.evaluation.code_tasks import CODE_TASKS

from reasoning_sft.registry import REPORT_FIGURES
from reasoning_sft.sweep import job_dirs



@dataclass
class Fit:
    slope: float
    intercept: float
    r2: float
    slope_ci95: tuple[float, float]
    n: int


def log_linear_fit(x: list[float], y: list[float]) -> Fit:
    """Least squares y = intercept + slope * ln(x), with a t-based 95% interval on the slope."""
    from scipy import stats
    if len(x) < 2 or len(set(x)) < 2:
        raise ValueError(f"a log-linear fit needs at least 2 distinct x values, got {sorted(set(x))}")
    lx = [math.log(v) for v in x]
    res = stats.linregress(lx, y)
    n = len(x)
    if n > 2:
        half = stats.t.ppf(0.975, n - 2) * res.stderr
        ci = (res.slope - half, res.slope + half)
    else:
        ci = (float("nan"), float("nan"))   # two points: a line, but no interval
    return Fit(res.slope, res.intercept, res.rvalue ** 2, ci, n)


def _get(d: dict, path: str, default=None):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def find_runs(paths: list[Path]) -> list[Path]:
    """Run dirs from sweep dirs (their job dirs) and run dirs given directly."""
    runs = []
    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such directory (expected a sweep dir or a run dir)")
        if (p / "summary.json").is_file() or (p / ".hydra").is_dir():
            runs.append(p)
        else:
            jobs = job_dirs(p)
            if not jobs:
                raise FileNotFoundError(f"{p}: neither a run dir (summary.json) nor a sweep dir (job dirs)")
            runs += jobs
    return runs


def gather_row(run_dir: Path) -> dict:
    """One row: what the job varied, its status, data, training and every task's metrics."""
    summary_file, config_file = run_dir / "summary.json", run_dir / "config.yaml"
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    summary = {"status": "failed", "error": "no summary.json (killed or never started)"}
    cfg, overrides, reading = {}, [], summary_file
    try:   # an unreadable file makes its run a listed, unreadable row: the report is still written
        if summary_file.is_file():
            summary = json.loads(summary_file.read_text())
        reading = config_file
        cfg = (yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}) or {}
        reading = overrides_file
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        if not isinstance(summary, dict) or not isinstance(cfg, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else ""
        summary = {"status": "unreadable", "error": f"{reading.name}: {type(e).__name__}: {first}"}
        cfg, overrides = {}, []
    card = summary.get("data") or {}
    row = {
        "run": run_dir.name, "run_dir": str(run_dir), "status": summary.get("status", "finished"),
        "error": summary.get("error"), "overrides": " ".join(overrides or []),
        "experiment": summary.get("experiment") or cfg.get("experiment_name"),
        "model": summary.get("model") or _get(cfg, "model.name"),
        "parameters": summary.get("num_parameters"), "trainable_parameters": summary.get("trainable_parameters"),
        "peft": bool(_get(cfg, "peft.enabled", False)),
        "ablation": _get(cfg, "ablation.name", "none"), "ablation_rate": _get(cfg, "ablation.rate"),
        "num_samples": _get(cfg, "data.num_samples"), "length_buckets": json.dumps(_get(cfg, "data.length_buckets")),
        "target_tokens": _get(cfg, "ablation.target_tokens"), "min_trace_tokens": _get(cfg, "data.min_trace_tokens"),
        "max_trace_tokens": _get(cfg, "data.max_trace_tokens"),
        "examples": card.get("examples"), "trace_tokens_mean": _get(card, "trace_tokens.mean"),
        "final_loss": _get(summary, "train.final_loss"), "steps": _get(summary, "train.steps"),
        "max_thinking_tokens": _get(cfg, "eval.budget_forcing.max_thinking_tokens")
        if _get(cfg, "eval.budget_forcing.enabled") else None,
        "num_wait": _get(cfg, "eval.budget_forcing.num_wait") if _get(cfg, "eval.budget_forcing.enabled") else None,
        "study_figure": _get(cfg, "report.figure"), "study_x": _get(cfg, "report.x"),
        "study_baseline": _get(cfg, "report.baseline"),
    }
    if row["study_x"]:
        row[row["study_x"]] = _get(cfg, row["study_x"])   # the declared axis, as its own column
    by_domain: dict[str, list[float]] = {}
    for task, m in (summary.get("eval") or {}).items():
        for k in ("accuracy", "ci95_low", "ci95_high", "num_problems", "thinking_tokens_mean"):
            if k in m:
                row[f"{task}/{k}"] = m[k]
        if "accuracy" in m and task != "synthetic":
            by_domain.setdefault("code" if task in CODE_TASKS else "math", []).append(m["accuracy"])
    for domain, accs in sorted(by_domain.items()):   # Sky-T1 reports math and code apart: the mean per domain
        row[f"{domain}_mean"] = sum(accs) / len(accs)
    return row


def tasks_of(rows: list[dict]) -> list[str]:
    return sorted({k.split("/")[0] for r in rows for k in r if k.endswith("/accuracy")})


def no_signal_warnings(rows: list[dict]) -> list[str]:
    """A study whose every arm scores the same floor shows no effect, whatever its figure looks like."""
    out = []
    for task in tasks_of(rows):
        accs = [r[f"{task}/accuracy"] for r in rows if r.get("status") == "finished" and r.get(f"{task}/accuracy") is not None]
        if len(accs) >= 2 and max(accs) <= 0.01:
            out.append(f"warning: every run scores {max(accs):.3f} or less on {task}: the models are at chance and "
                       "the study shows no effect (train longer, or on the task it is evaluated on)")
    return out


def declared_study(rows: list[dict]) -> dict | None:
    """The sweep file's `report` block, when every finished run carries the same one."""
    for r in rows:
        if r.get("study_figure") is not None and r["study_figure"] not in REPORT_FIGURES:
            raise ValueError(REPORT_FIGURES.unknown(r["study_figure"]) + f" in {r.get('run_dir', r['run'])}/config.yaml")
    blocks = {json.dumps([r.get("study_figure"), r.get("study_x"), r.get("study_baseline")])
              for r in rows if r["status"] == "finished"}
    if len(blocks) != 1:
        return None
    figure, x, baseline = json.loads(blocks.pop())
    if figure is None:
        return None
    return {"figure": figure, "x": x, "baseline": baseline}


def _varies(rows: list[dict], key: str) -> bool:
    return len({json.dumps(r.get(key)) for r in rows if r.get(key) is not None}) > 1


def _series(rows, task, xkey):
    pts = sorted((r[xkey], r[f"{task}/accuracy"], r.get(f"{task}/ci95_low"), r.get(f"{task}/ci95_high"))
                 for r in rows if r.get(xkey) is not None and r.get(f"{task}/accuracy") is not None)
    return pts


def _errorbar(ax, pts, label):
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    lo = [max(0.0, y - (p[2] if p[2] is not None else y)) for y, p in zip(ys, pts)]
    hi = [max(0.0, (p[3] if p[3] is not None else y) - y) for y, p in zip(ys, pts)]
    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label)


@dataclass(frozen=True)
class Figure:
    """A figure a study may declare (`report.figure`, registry.REPORT_FIGURES) or its varying keys call for:
    `line` = (x column, x label, log x, log-linear fit) draws accuracy per task against x; None: the
    ablation's bars against the baseline."""
    name: str
    called_for: Callable[[list[dict]], bool]
    line: tuple | None = None


# Registered by the module under its own name: `python -m reasoning_sft.report` runs this file as __main__
# too, which must not register a second copy (its entry point below hands over to the module).
for _figure in () if __name__ == "__main__" else (
    Figure("sample_count", lambda done: _varies(done, "examples") and (_varies(done, "num_samples")
                                                                       or not _varies(done, "trace_tokens_mean")),
           ("examples", "training samples", True, False)),
    # Trace length is the study when the jobs choose it: length buckets, Long1K's target, bounds.
    Figure("trace_length", lambda done: _varies(done, "trace_tokens_mean") and any(_varies(done, k) for k in (
        "length_buckets", "target_tokens", "min_trace_tokens", "max_trace_tokens")),
           ("trace_tokens_mean", "mean trace tokens (log)", True, True)),
    Figure("ablation", lambda done: _varies(done, "ablation") or _varies(done, "ablation_rate")),
    Figure("model_size", lambda done: _varies(done, "parameters"), ("parameters", "parameters", True, False)),
    # s1's test-time scaling: x is the thinking each task's model actually did
    Figure("thinking_tokens", lambda done: _varies(done, "max_thinking_tokens") or _varies(done, "num_wait"),
           ("{task}/thinking_tokens_mean", "mean thinking tokens", False, False)),
):
    REPORT_FIGURES.add(_figure.name, _figure)


def draw_figures(rows: list[dict], out: Path) -> dict[str, dict]:
    """The figures the rows call for; returns {name: {file, caption, fits}}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "finished"]
    tasks = tasks_of(done)
    figures: dict[str, dict] = {}
    if not tasks:
        return figures

    def line_figure(name, xkey, xlabel, logx, fit):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        fits = {}
        for task in tasks:
            pts = _series(done, task, xkey.format(task=task))   # xkey may name a per-task column
            if not pts:
                continue
            _errorbar(ax, pts, task)
            if fit and len({p[0] for p in pts}) >= 2 and all(p[0] > 0 for p in pts):
                f = log_linear_fit([p[0] for p in pts], [p[1] for p in pts])
                xs = sorted(p[0] for p in pts)
                ax.plot(xs, [f.intercept + f.slope * math.log(x) for x in xs], "--", color="grey")
                fits[task] = vars(f)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (95% CI)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures[name] = {"file": path.name, "fits": fits}

    study = declared_study(done)
    wanted = {study["figure"]} if study else {   # undeclared: what the varying keys call for
        name for name, figure in REPORT_FIGURES.items() if figure.called_for(done)}
    for name in (n for n in REPORT_FIGURES if n in wanted and REPORT_FIGURES[n].line):
        line_figure(name, *REPORT_FIGURES[name].line)
    if "ablation" in wanted:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        if study and study["x"]:
            labels = [f"{study['x'].split('.')[-1]}={r.get(study['x'])}" for r in done]
            is_base = [str(r.get(study["x"])) == str(study["baseline"]) for r in done]
        else:
            labels = [f"{r['ablation']}" + (f" {r['ablation_rate']}" if r["ablation_rate"] is not None else "")
                      for r in done]
            is_base = [r["ablation"] == "none" or r["ablation_rate"] == 0 for r in done]
        width = 0.8 / len(tasks)
        for i, task in enumerate(tasks):
            ys = [r.get(f"{task}/accuracy") or 0.0 for r in done]
            lo = [y - (r.get(f"{task}/ci95_low") if r.get(f"{task}/ci95_low") is not None else y)
                  for y, r in zip(ys, done)]
            hi = [(r.get(f"{task}/ci95_high") if r.get(f"{task}/ci95_high") is not None else y) - y
                  for y, r in zip(ys, done)]
            ax.bar([j + i * width for j in range(len(done))], ys, width, yerr=[lo, hi], capsize=3, label=task)
            base = [r.get(f"{task}/accuracy") for r, b in zip(done, is_base) if b]
            if base:
                ax.axhline(base[0], linestyle="--", color="grey", linewidth=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(done))], labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("accuracy (95% CI)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "ablation.png", dpi=120)
        plt.close(fig)
        figures["ablation"] = {"file": "ablation.png", "fits": {}}
    return figures


def _varied_overrides(rows: list[dict]) -> None:
    """`varied`: the overrides whose value differs between the runs (what the study changed)."""
    parsed = [dict(o.split("=", 1) for o in r["overrides"].split() if "=" in o) for r in rows]
    keys = [k for k in dict.fromkeys(k for p in parsed for k in p) if len({p.get(k) for p in parsed}) > 1]
    for r, p in zip(rows, parsed):
        r["varied"] = " ".join(f"{k}={p[k]}" for k in keys if k in p)


COLUMNS = ["run", "status", "varied", "model", "parameters", "peft", "ablation", "ablation_rate", "num_samples",
           "examples", "trace_tokens_mean", "final_loss", "max_thinking_tokens"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _ci(v) -> str:
    return "" if v is None else f"{float(v):.3f}"


def write_report(rows: list[dict], out: Path, figures: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    _varied_overrides(rows)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    csv_path = out / "report.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tasks = tasks_of(rows)
    axis = [k for k in dict.fromkeys(r.get("study_x") for r in rows) if k and k not in COLUMNS]
    cols = COLUMNS[:3] + axis + COLUMNS[3:] + [f"{t}/accuracy" for t in tasks]   # the declared axis up front
    if any("code_mean" in r for r in rows):   # math and code benchmarks side by side, as Sky-T1 reports them
        cols += [c for c in ("math_mean", "code_mean") if any(c in r for r in rows)]
    lines = ["# Report", "", f"{len(rows)} runs: {sum(r['status'] == 'finished' for r in rows)} finished, "
             f"{sum(r['status'] != 'finished' for r in rows)} failed.", ""]
    lines += ["| " + " | ".join(cols + ["95% CI"]) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        cis = "; ".join(f"{t} [{_ci(r.get(f'{t}/ci95_low'))}, {_ci(r.get(f'{t}/ci95_high'))}]"
                        for t in tasks if r.get(f"{t}/accuracy") is not None)
        lines.append("| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in cols) + f" | {cis} |")
    failed = [r for r in rows if r["status"] != "finished"]
    if failed:
        lines += ["", "## Failed or unreadable runs", ""] + [f"- `{r['run']}` ({r['status']}): {r['error']}" for r in failed]
    for name, fig in figures.items():
        lines += ["", f"## {name.replace('_', ' ')}", "", f"![{name}]({fig['file']})"]
        for task, f in fig["fits"].items():
            lo, hi = f["slope_ci95"]
            lines.append(f"\n{task}: accuracy = {f['intercept']:.4f} + {f['slope']:.4f} ln(tokens), "
                         f"R^2 = {f['r2']:.3f}, slope 95% CI [{lo:.4f}, {hi:.4f}] over {f['n']} runs")
    warnings = no_signal_warnings(rows)
    if warnings:
        lines[3:3] = [f"**{w}**" for w in warnings] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(
        {"stage": "report", "runs": len(rows), "failed": len(failed), "figures": figures, "warnings": warnings,
         "csv": str(csv_path), "markdown": str(md_path)}, indent=2, default=str) + "\n")
    return csv_path, md_path


def wandb_rows(group: str, project: str, entity: str | None) -> list[dict]:
    """Runs of a W&B group (online): their summary metrics as rows, for runs not on this disk."""
    import wandb
    api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    rows = []
    for run in api.runs(path, filters={"group": group}):
        row = {"run": run.name, "run_dir": run.url, "status": "finished" if run.state == "finished" else run.state,
               "error": None, "overrides": run.name, "experiment": group}
        for k, v in run.summary.items():
            if k.startswith("eval/") and isinstance(v, (int, float)):
                task, _, metric = k[5:].rpartition("/")
                row[f"{task}/{metric}"] = v
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reasoning_sft.report", description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="sweep dirs and/or run dirs")
    ap.add_argument("--out", type=Path, default=None, help="default: <first path>/report")
    ap.add_argument("--wandb-group", default=None, help="also gather this W&B group's runs (online)")
    ap.add_argument("--wandb-project", default="reasoning-sft")
    ap.add_argument("--wandb-entity", default=None)
    args = ap.parse_args(argv)
    try:
        runs = find_runs(args.paths)
    except FileNotFoundError as e:
        print(f"report error: {e}", file=sys.stderr)
        return 2
    rows = [gather_row(r) for r in runs]
    if args.wandb_group:
        rows += wandb_rows(args.wandb_group, args.wandb_project, args.wandb_entity)
    out = args.out or (args.paths[0] / "report")
    out.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FIGURES:   # a re-run must not leave a figure the runs no longer call for
        (out / f"{name}.png").unlink(missing_ok=True)
    figures = draw_figures(rows, out)
    csv_path, md_path = write_report(rows, out, figures)
    print(f"{len(rows)} runs ({sum(r['status'] != 'finished' for r in rows)} failed), {len(figures)} figures")
    for w in no_signal_warnings(rows):
        print(w, file=sys.stderr)
    print(f"csv:      {csv_path}\nmarkdown: {md_path}")
    return 0


if __name__ == "__main__":
    from reasoning_sft import report   # the module the figures registered in (registry.REPORT_FIGURES)
    sys.exit(report.main())

"""Grade stage: `python -m reasoning_sft.grade input=FILE [fields.response=...] [thinking_style=...]`.
Code (`task=livecodebench|apps|taco`): rows carry LiveCodeBench's problem fields and a response; each
response's program runs on the problem's tests in the sandbox (reasoning_sft/evaluation/sandbox.py).

Re-grades saved generations, never regenerating them: an `eval_samples.jsonl` of this project (its
fields and each row's thinking style are known) or any user jsonl with a response and a gold answer.
The run dir holds config.yaml, graded.jsonl (each input row in input order, plus `correct`,
`extracted`, `grading`) and summary.json (accuracy with its bootstrap 95% interval, counts per
outcome, agreement with an existing verdict column when one is named).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from reasoning_sft.cli import run_cli
from reasoning_sft.rundir import finish_stage, open_run_dir
from reasoning_sft.schema import GradeConfig, raise_errors, typed


def validate(cfg: DictConfig) -> GradeConfig:
    """Every problem of the command at once (types, ranges and names: schema.GradeConfig), before any
    work; the command's settings, typed."""
    errs: list[str] = []
    if OmegaConf.is_missing(cfg, "input"):
        raise_errors(["input: a required value is missing (input=FILE.jsonl)"])
    g = typed(cfg, GradeConfig, "", errs)
    if not Path(str(cfg.input)).is_file():
        errs.append(f"input={cfg.input!r}: no such file")
    raise_errors(errs)
    from reasoning_sft.registry import GRADE_TASKS
    if GRADE_TASKS.get(g.task).code:
        from reasoning_sft.evaluation.sandbox import check_sandbox, require_harness
        require_harness()
        check_sandbox(g.code)   # strict and uncontainable: refused here, before the run dir
    return g


def row_style(g: GradeConfig, row: dict, response: str) -> str | None:
    from reasoning_sft.evaluation.grading import detect_style
    style = g.thinking_style or row.get("thinking_style") or detect_style(response)
    return None if style == "none" else style


def read_input(g: GradeConfig, task) -> list[tuple[str, dict, str, object]]:
    """(where, row, response, gold) for every row; a bad row stops the stage before any grading."""
    from reasoning_sft.data.loaders import read_rows
    from reasoning_sft.errors import DataError
    from reasoning_sft.evaluation.evaluator import RESPONSE_FIELDS, pick_field
    out = []
    for where, row in read_rows(str(g.input)):
        response = row[pick_field(g.fields.response, RESPONSE_FIELDS, row, where, "fields.response")]
        gold = task.gold(row, where, g.fields.gold, g.code)
        if not task.code and g.fields.verdict and g.fields.verdict not in row:
            raise DataError(f"{where}: no field {g.fields.verdict!r} (fields.verdict); the row has {sorted(row)}")
        response = one_sample(response, where, "the response field")
        if not isinstance(response, str):
            raise DataError(f"{where}: the response field holds {type(response).__name__}, expected text")
        out.append((where, row, response, gold))
    if not out:
        raise DataError(f"{g.input}: no rows to grade")
    return out


def one_sample(value, where: str, what: str):
    """A harness's one-sample list (the Qwen2.5-Math harness writes `code: [text]`, `score: [bool]`) as
    its value; a longer list is one row per sample's business, said with the row."""
    from reasoning_sft.errors import DataError
    if isinstance(value, list):
        if len(value) != 1:
            raise DataError(f"{where}: {what} holds {len(value)} values: grade one response per row")
        return value[0]
    return value


def problem_key(g: GradeConfig, task, row: dict, index: int):
    if g.fields.problem:
        return row.get(g.fields.problem)
    if task.code and "question_id" in row:
        return row["question_id"]
    if "task" in row and "id" in row:
        return (row["task"], row["id"])
    return index


def summarize(g: GradeConfig, task, rows: list[dict]) -> dict:
    """Accuracy as mean pass@1 over problems (samples of one problem are averaged first)."""
    from reasoning_sft.evaluation.grading import OUTCOMES
    from reasoning_sft.evaluation.metrics import accuracy_summary, pass_at_k
    from reasoning_sft.evaluation.sandbox import VERDICTS
    per_problem = defaultdict(list)
    for i, row in enumerate(rows):
        per_problem[problem_key(g, task, row, i)].append(row["correct"])
    pass1 = [sum(v) / len(v) for v in per_problem.values()]
    summary = accuracy_summary(pass1, g.bootstrap_samples, g.seed)
    summary["num_responses"] = len(rows)
    outcomes = Counter(r["grading"] for r in rows)
    summary["grading"] = {o: outcomes[o] for o in dict.fromkeys((*OUTCOMES, *VERDICTS)) if outcomes[o]}
    summary["thinking_styles"] = dict(Counter(str(r["_style"]) for r in rows))
    if task.code:
        n = min(len(v) for v in per_problem.values())
        for k in (k for k in (1, 5, 10) if k <= n):
            summary[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_problem.values()) / len(per_problem)
        from reasoning_sft.evaluation.sandbox import isolation_summary
        summary["sandbox_isolation"] = isolation_summary([r["sandbox"]["isolation"] for r in rows if r.get("sandbox")])
        summary["sandbox"] = g.code.sandbox
    return summary


def agreement(column: str, rows: list[dict], wheres: list[str]) -> dict:
    theirs = [bool(one_sample(r[column], w, f"fields.verdict={column}")) for r, w in zip(rows, wheres)]
    differ = [w for w, r, t in zip(wheres, rows, theirs) if r["correct"] != t]
    return {"column": column, "agree": 1 - len(differ) / len(rows), "differ": len(differ),
            "we_credit_they_do_not": sum(r["correct"] and not t for r, t in zip(rows, theirs)),
            "they_credit_we_do_not": sum(t and not r["correct"] for r, t in zip(rows, theirs)),
            "first_differences": differ[:10]}


def run_grade(cfg: DictConfig) -> dict:
    t0 = time.time()
    g = validate(cfg)
    from reasoning_sft.evaluation.evaluator import Grader
    from reasoning_sft.registry import GRADE_TASKS
    task = GRADE_TASKS.get(g.task)
    inputs = read_input(g, task)
    # the evaluation's grader: its profile and judge (built once), its policy, limits and timeouts
    grader = Grader(g.profile, g.judge, g.truncated, g.timeout_seconds, g.code, profile_key="profile")
    run_dir = open_run_dir(cfg)
    if task.by_profile and (line := grader.judge_line()):
        print(line, flush=True)
    styles = [row_style(g, row, response) for _, row, response, _ in inputs]
    graded = task.grade(grader, [(response, gold, style, row) for (_, row, response, gold), style
                                 in zip(inputs, styles)], g.code.workers)
    rows = [{**row, "correct": result.correct, "extracted": result.extracted, "grading": result.outcome, **extra,
             "_style": style} for (_, row, _, _), style, (result, extra) in zip(inputs, styles, graded)]
    with open(run_dir / "graded.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if k != "_style"}, ensure_ascii=False, default=str)
                    + "\n")
    summary = summarize(g, task, rows)
    if task.by_profile:
        summary.update(grader.describe())
    if g.fields.verdict:
        summary["agreement"] = agreement(g.fields.verdict, rows, [where for where, *_ in inputs])
    return finish_stage(run_dir, "grade", input=str(g.input), task=g.task, truncated_policy=g.truncated,
                        grade=summary, total_seconds=round(time.time() - t0, 1))


def report(summary: dict) -> None:
    g = summary["grade"]
    print(f"graded {g['num_responses']} responses: accuracy {g['accuracy']:.3f} (95% CI {g['ci95_low']:.3f}-"
          f"{g['ci95_high']:.3f}, n={g['num_problems']}); {g['grading']}")
    if "agreement" in g:
        a = g["agreement"]
        print(f"agreement with {a['column']!r}: {a['agree']:.3f} ({a['differ']} differ)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="grade")
def main(cfg: DictConfig) -> None:
    run_cli(run_grade, cfg, report, writes="")


if __name__ == "__main__":
    main()

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

from reasoning_sft.rundir import finish_stage, open_run_dir
from reasoning_sft.schema import GradeConfig, raise_errors, typed
from reasoning_sft.cli import run_cli
from reasoning_sft.data.loaders import read_rows
from reasoning_sft.errors import DataError
from reasoning_sft.evaluation.grading import OUTCOMES, Grade, answer_section, detect_style, \
    grade_letter_response
from reasoning_sft.evaluation.profiles import describe_judge, grade_math_profile, judge_from, judge_line
from reasoning_sft.evaluation.sandbox import VERDICTS
from reasoning_sft.evaluation.code_tasks import CODE_TASKS, extract_code, problem_from_row
from reasoning_sft.evaluation.metrics import accuracy_summary, pass_at_k

RESPONSE_FIELDS = ("generation", "response")
GOLD_FIELDS = ("gold", "answer", "gt", "gold_answer")
TASKS = ("math", "gpqa", *CODE_TASKS)


def _pick(given: str | None, candidates: tuple[str, ...], row: dict, where: str, key: str) -> str:
    if given:
        if given not in row:
            raise DataError(f"{where}: no field {given!r} ({key}); the row has {sorted(row)}")
        return given
    found = next((c for c in candidates if c in row), None)
    if found is None:
        raise DataError(f"{where}: none of {list(candidates)} is a field of the row ({sorted(row)}): "
                        f"name it with {key}=")
    return found


def validate(cfg: DictConfig) -> None:
    """Every problem of the command at once (types and ranges: schema.GradeConfig), before any work."""
    errs: list[str] = []
    if OmegaConf.is_missing(cfg, "input"):
        raise_errors(["input: a required value is missing (input=FILE.jsonl)"])
    typed(cfg, GradeConfig, "", errs)
    if cfg.task not in TASKS:
        errs.append(f"task={cfg.task!r}: expected one of {list(TASKS)}")
    if not Path(str(cfg.input)).is_file():
        errs.append(f"input={cfg.input!r}: no such file")
    raise_errors(errs)
    if cfg.task in CODE_TASKS:
        from reasoning_sft.evaluation.sandbox import check_sandbox, limits_from, require_harness
        require_harness()
        check_sandbox(limits_from(cfg.code))   # strict and uncontainable: refused here, before the run dir


def row_style(cfg: DictConfig, row: dict, response: str) -> str | None:
    style = cfg.thinking_style or row.get("thinking_style") or detect_style(response)
    return None if style == "none" else style


QUESTION_FIELDS = ("question", "problem", "prompt")


def grade_row(cfg: DictConfig, row: dict, response: str, gold: str, judge=None) -> tuple[Grade, str | None]:
    style = row_style(cfg, row, response)
    if cfg.task == "math":
        question = next((str(row[f]) for f in QUESTION_FIELDS if f in row), "")   # the long1k judge reads it
        return grade_math_profile(response, gold, style, cfg.profile, cfg.truncated, cfg.timeout_seconds,
                                  judge, question), style
    return grade_letter_response(response, gold, style, cfg.truncated), style


def read_input(cfg: DictConfig) -> list[tuple[str, dict, str, str]]:
    """(where, row, response, gold) for every row; a bad row stops the stage before any grading."""
    out = []
    for where, row in read_rows(str(cfg.input)):
        response = row[_pick(cfg.fields.response, RESPONSE_FIELDS, row, where, "fields.response")]
        if cfg.task in CODE_TASKS:   # the tests are the gold: a bad problem row is named here, before any run
            gold = problem_from_row(row, where, cfg.code.public_only, cfg.code.max_tests_mb).input_output
            if not isinstance(response, str):
                raise DataError(f"{where}: the response field holds {type(response).__name__}, expected text")
            out.append((where, row, response, gold))
            continue
        gold = row[_pick(cfg.fields.gold, GOLD_FIELDS, row, where, "fields.gold")]
        if cfg.fields.verdict and cfg.fields.verdict not in row:
            raise DataError(f"{where}: no field {cfg.fields.verdict!r} (fields.verdict); the row has {sorted(row)}")
        if not isinstance(response, str):
            raise DataError(f"{where}: the response field holds {type(response).__name__}, expected text")
        if isinstance(gold, list):      # OlympiadBench-style lists of final answers
            gold = ", ".join(str(g).strip("$") for g in gold)
        out.append((where, row, response, str(gold)))
    if not out:
        raise DataError(f"{cfg.input}: no rows to grade")
    return out


def problem_key(cfg: DictConfig, row: dict, index: int):
    if cfg.fields.problem:
        return row.get(cfg.fields.problem)
    if cfg.task in CODE_TASKS and "question_id" in row:
        return row["question_id"]
    if "task" in row and "id" in row:
        return (row["task"], row["id"])
    return index


def summarize(cfg: DictConfig, rows: list[dict]) -> dict:
    """Accuracy as mean pass@1 over problems (samples of one problem are averaged first)."""
    per_problem = defaultdict(list)
    for i, row in enumerate(rows):
        per_problem[problem_key(cfg, row, i)].append(row["correct"])
    pass1 = [sum(v) / len(v) for v in per_problem.values()]
    summary = accuracy_summary(pass1, cfg.bootstrap_samples, cfg.seed)
    summary["num_responses"] = len(rows)
    outcomes = Counter(r["grading"] for r in rows)
    summary["grading"] = {o: outcomes[o] for o in (*OUTCOMES, "letter", *VERDICTS, "truncated") if outcomes[o]}
    summary["thinking_styles"] = dict(Counter(str(r["_style"]) for r in rows))
    if cfg.task in CODE_TASKS:
        n = min(len(v) for v in per_problem.values())
        for k in (k for k in (1, 5, 10) if k <= n):
            summary[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_problem.values()) / len(per_problem)
        from reasoning_sft.evaluation.sandbox import isolation_summary
        summary["sandbox_isolation"] = isolation_summary([r["sandbox"]["isolation"] for r in rows if r.get("sandbox")])
        summary["sandbox"] = cfg.code.sandbox
    return summary


def grade_code_rows(cfg: DictConfig, inputs: list) -> list[dict]:
    """Each response's program (the last code block of its answer section) run on its problem's tests
    in the sandbox, `code.workers` at a time."""
    from reasoning_sft.evaluation.sandbox import limits_from, run_programs
    styles = [row_style(cfg, row, response) for _, row, response, _ in inputs]
    programs = [extract_code(response, style) for (_, _, response, _), style in zip(inputs, styles)]
    verdicts = run_programs([(p, gold) for p, (_, _, _, gold) in zip(programs, inputs)], limits_from(cfg.code),
                            cfg.code.workers)
    rows = []
    for (_, row, response, _), style, program, v in zip(inputs, styles, programs, verdicts):
        grading = "truncated" if program is None and answer_section(response, style) is None else v["verdict"]
        rows.append({**row, "correct": v["verdict"] == "passed", "extracted": program, "grading": grading,
                     "sandbox": {"results": v["results"], "message": v["metadata"].get("error_message"),
                                 "isolation": v["isolation"], "seconds": v["seconds"]}, "_style": style})
    return rows


def agreement(cfg: DictConfig, rows: list[dict], wheres: list[str]) -> dict:
    col = cfg.fields.verdict
    theirs = [bool(r[col]) for r in rows]
    differ = [w for w, r, t in zip(wheres, rows, theirs) if r["correct"] != t]
    return {"column": col, "agree": 1 - len(differ) / len(rows), "differ": len(differ),
            "we_credit_they_do_not": sum(r["correct"] and not t for r, t in zip(rows, theirs)),
            "they_credit_we_do_not": sum(t and not r["correct"] for r, t in zip(rows, theirs)),
            "first_differences": differ[:10]}


def run_grade(cfg: DictConfig) -> dict:
    t0 = time.time()
    validate(cfg)
    inputs = read_input(cfg)
    run_dir = open_run_dir(cfg)
    rows, wheres = [], [where for where, *_ in inputs]
    judge = judge_from(cfg.judge)
    if cfg.task == "math" and (line := judge_line(cfg.profile, judge)):
        print(line, flush=True)
    if cfg.task in CODE_TASKS:
        rows = grade_code_rows(cfg, inputs)
    for where, row, response, gold in ([] if cfg.task in CODE_TASKS else inputs):
        result, style = grade_row(cfg, row, response, gold, judge)
        rows.append({**row, "correct": result.correct, "extracted": result.extracted, "grading": result.outcome,
                     "_style": style})
    with open(run_dir / "graded.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if k != "_style"}, ensure_ascii=False, default=str)
                    + "\n")
    summary = summarize(cfg, rows)
    if cfg.task == "math":
        summary["grading_profile"], summary["judge"] = cfg.profile, describe_judge(judge)
    if cfg.fields.verdict:
        summary["agreement"] = agreement(cfg, rows, wheres)
    return finish_stage(run_dir, "grade", input=str(cfg.input), task=cfg.task, truncated_policy=cfg.truncated,
                        grade=summary, total_seconds=round(time.time() - t0, 1))


def report(summary: dict) -> None:
    g = summary["grade"]
    print(f"graded {g['num_responses']} responses: accuracy {g['accuracy']:.3f} (95% CI {g['ci95_low']:.3f}-"
          f"{g['ci95_high']:.3f}, n={g['num_problems']}); {g['grading']}")
    if "agreement" in g:
        a = g["agreement"]
        print(f"agreement with {a['column']!r}: {a['agree']:.3f} ({a['differ']} differ)")
    print(f"run dir: {summary['run_dir']}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="grade")
def main(cfg: DictConfig) -> None:
    run_cli(run_grade, cfg, report)


if __name__ == "__main__":
    main()

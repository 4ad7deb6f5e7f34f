"""One evaluation, built once (torchtune's eval recipe: the config read in `__init__`, the parts built
once, `run()` reading only `self`):

- `Grader`: the grading profile (registry.GRADING_PROFILES) with its judge built once, the truncation
  policy, math-verify's time limit, the sandbox's limits; each response graded once. The grade stage,
  which generates nothing, uses it alone.
- `Evaluator`: the eval group (schema.EvalConfig), the thinking style, the prompt (`eval.prompt`,
  resolved once), the grader, the tasks (registry.EVAL_TASKS) with their problems loaded once, and a
  generation engine (engines.Engine: HF or vLLM) attached after the checks. The in-process path (the
  synthetic task after every training) runs here; lm_eval_adapter.py only adapts this object to
  lm-evaluation-harness; both write the same per-sample rows and summaries.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median
from typing import Any, Callable

from reasoning_sft.data.styles import get_style
from reasoning_sft.errors import DataError
from reasoning_sft.evaluation.decoding import decoding
from reasoning_sft.evaluation.grading import OUTCOMES, Grade, answer_section
from reasoning_sft.evaluation.metrics import sampled_summary
from reasoning_sft.evaluation.profiles import judge_from
from reasoning_sft.evaluation.prompts import eval_prompt
from reasoning_sft.registry import EVAL_TASKS, GRADE_TASKS, GRADING_PROFILES
from reasoning_sft.schema import CodeEvalConfig, EvalConfig, JudgeConfig

_OWN = object()   # a style argument left out: the grader's own


class Grader:
    """Every grading of one evaluation (or one grade-stage run), bound once."""

    def __init__(self, profile: str, judge: JudgeConfig, truncated: str = "wrong", timeout_seconds: int = 5,
                 code: CodeEvalConfig = CodeEvalConfig(), style: str | None = None, profile_key: str | None = None):
        self.profile = GRADING_PROFILES.get(profile, profile_key)
        self.profile.require()                # what it needs is there, or one line saying how to get it
        self.judge = judge_from(judge)        # one judge (one HTTP client) for every answer it is asked about
        self.truncated, self.timeout_seconds, self.code_limits, self.style = truncated, timeout_seconds, code, style

    @classmethod
    def for_eval(cls, ev: EvalConfig, style: str | None) -> Grader:
        g = ev.grading
        return cls(g.profile, g.judge, g.truncated, g.timeout_seconds, ev.code, style)

    def math(self, response: str, gold: str, question: str = "", style=_OWN) -> Grade:
        """The profile's maths grader (strict: math-verify on the answer section of the thinking style)."""
        style = self.style if style is _OWN else style
        return self.profile.grade(response, gold, style, question, self.truncated, self.timeout_seconds, self.judge)

    def letter(self, response: str, gold: str, question: str = "", style=_OWN) -> Grade:
        """A multiple-choice answer (GPQA) against the gold letter, read as the profile reads it (s1's
        reading and judge, Long1K's judge, else ours on the answer section); `question` for the judges."""
        style = self.style if style is _OWN else style
        return self.profile.letter(response, gold, style, question, self.truncated, self.judge)

    def code(self, response: str, input_output: str, style=_OWN) -> Grade:
        """The last code block of the answer run on every test of the problem in the sandbox."""
        return self.programs([(response, input_output, self.style if style is _OWN else style)], workers=1)[0][0]

    def programs(self, items: list[tuple[str, str, str | None]], workers: int) -> list[tuple[Grade, dict]]:
        """(Grade, the sandbox's verdict) for each (response, tests, style), `workers` programs at a time."""
        from reasoning_sft.evaluation.code_tasks import extract_code
        from reasoning_sft.evaluation.sandbox import run_programs
        programs = [extract_code(response, style) for response, _, style in items]
        verdicts = run_programs([(p, tests) for p, (_, tests, _) in zip(programs, items)], self.code_limits, workers)
        out = []
        for (response, _, style), program, v in zip(items, programs, verdicts):
            outcome = "truncated" if program is None and answer_section(response, style) is None else v["verdict"]
            out.append((Grade(v["verdict"] == "passed", program, outcome, v["isolation"]), v))
        return out

    def judge_line(self) -> str | None:
        return self.profile.judge_line(self.judge)

    def describe(self) -> dict:
        """What the summary records: whose grader gave the verdicts, and which judge."""
        return {"grading_profile": self.profile.name,
                "judge": "none" if self.judge is None else self.judge.describe()}


class Evaluator:
    """An evaluation of `ev.tasks`: problems, prompts, generation, grading, rows and summaries."""

    def __init__(self, ev: EvalConfig, thinking_style: str, system_prompt: str | None, seed: int,
                 synthetic_shape: dict | None = None):
        self.config, self.seed = ev, seed      # the run's seed: synthetic problems, GPQA's choice order
        self.sampling_seed = seed if ev.seed is None else ev.seed
        self.decoding = decoding(ev.temperature, ev.top_p, ev.top_k, ev.repetition_penalty, ev.min_tokens)
        self.style_name, self.style = thinking_style, get_style(thinking_style)
        self.system, self.user_template = eval_prompt(ev.prompt, system_prompt)
        self.grader = Grader.for_eval(ev, thinking_style)
        self.synthetic_shape = dict(synthetic_shape or {})   # the synthetic task: as the model was trained
        self.tasks = {name: EVAL_TASKS.get(name) for name in ev.tasks if name in EVAL_TASKS}
        self.builtin = [name for name in ev.tasks if name not in EVAL_TASKS]   # lm-eval's own tasks
        self.engine = None
        self._problems: dict[str, list] = {}
        self._grades: dict[tuple, Grade] = {}

    # --- built once -------------------------------------------------------------------------------

    def problems(self, name: str) -> list:
        """A task's problems, read once per evaluation (a ConfigError naming the key when missing)."""
        if name not in self._problems:
            self._problems[name] = self.tasks[name].docs(self)
        return self._problems[name]

    def check(self) -> None:
        """Everything that can be known wrong before a model is loaded: every task's problems are there
        and readable (kept for the run), lm-eval's own task names exist and load."""
        for name in self.tasks:
            self.problems(name)
        if self.builtin:
            from reasoning_sft.evaluation.lm_eval_adapter import check_builtin_tasks
            check_builtin_tasks(self.builtin)

    def attach(self, engine) -> Evaluator:
        """The generation engine (engines.Engine), once the checks passed and the model is loaded."""
        self.engine = engine
        return self

    # --- generation and grading --------------------------------------------------------------------

    def render(self, user_turn: str) -> str:
        from reasoning_sft.data.formatting import render_prompt
        return render_prompt(user_turn, self.engine.tokenizer, self.system)

    def generate(self, prompts: list[str], repeats: int | None = None, keys: list | None = None) -> list[dict]:
        """`eval.samples_per_problem` generations per rendered prompt (problem-major), plain or
        budget-forced (`eval.budget_forcing.enabled`), greedy or sampled (`eval.temperature`, `eval.top_p`),
        each sample seeded by (eval's seed, its prompt's key in `keys` (default: its position), its
        sample index), over `eval.data_parallel_size` replicas when the engine is a pool, with a progress
        bar on stderr (responses done / total, generated tokens per second)."""
        from tqdm.auto import tqdm

        from reasoning_sft.evaluation.budget_forcing import thinking_cap
        from reasoning_sft.evaluation.decoding import sample_seed
        from reasoning_sft.evaluation.replicas import run_items
        ev, engine = self.config, self.engine
        n = ev.samples_per_problem if repeats is None else repeats
        keys = list(range(len(prompts))) if keys is None else keys
        seeds = [sample_seed(self.sampling_seed, key, j) for key in keys for j in range(n)]
        prompts = [p for p in prompts for _ in range(n)]
        bf = ev.budget_forcing
        # the thinking budget over every prompt asked together (s1's `auto` reads the longest of them)
        cap = thinking_cap(engine.tokenizer, prompts, self.style, bf, ev.max_new_tokens) if bf.enabled and prompts else None
        # the one-replica batches (HF: eval.batch_size rows, so a replica's batch is the same batch);
        # an engine that schedules its own (vLLM) gets every prompt, or an equal share per replica
        replicas = getattr(engine, "size", 1)
        chunk = -(-len(prompts) // replicas) if engine.batches_itself else ev.batch_size
        items = [(ev, self.style, self.decoding, prompts[i:i + chunk], seeds[i:i + chunk], cap)
                 for i in range(0, len(prompts), max(chunk, 1))]
        tokens, t0 = 0, time.time()
        with tqdm(total=len(prompts), desc="generating", unit="response", file=sys.stderr,
                  mininterval=0.5 if sys.stderr.isatty() else 30, disable=not prompts) as bar:
            def done(new: list[dict]) -> None:
                nonlocal tokens
                tokens += sum(r["generated_tokens"] for r in new)
                bar.update(len(new))
                bar.set_postfix_str(f"{tokens / max(time.time() - t0, 1e-9):.0f} tok/s")
            parts = run_items(engine, generate_part, items, done)
        return [r for part in parts for r in part]

    def effective_decoding(self) -> dict:
        """What decoded every response: eval's settings (never a checkpoint's), the seed, the budget, the
        backend and the precision its weights were loaded in."""
        return {**self.decoding, "seed": self.sampling_seed, "max_new_tokens": self.config.max_new_tokens,
                "backend": self.config.backend, "dtype": self.engine.dtype if self.engine is not None else None}

    def grade(self, name: str, index: int, generation: str) -> Grade:
        """Problem `index` of task `name` graded once: lm-eval's `process_results` and the rows share it."""
        key = (name, index, generation)
        if key not in self._grades:
            task = self.tasks[name]
            self._grades[key] = task.grade(generation, self.problems(name)[index], self)
        return self._grades[key]

    def row(self, name: str, index: int, sample: int, generation: str, details: dict, row_id=None) -> dict:
        """A line of eval_samples.jsonl (the grade stage reads them back); `row_id` None: the problem's
        own `id` when it has one, else its index."""
        doc = self.problems(name)[index]
        result = self.grade(name, index, generation)
        if row_id is None:
            row_id = doc.get("id", index) if isinstance(doc, dict) else index
        row = {"task": name, "id": row_id, "sample": sample,
               **details, "generation": generation, "extracted": result.extracted,
               "gold": self.tasks[name].target(doc, self), "correct": result.correct, "grading": result.outcome,
               "thinking_style": self.style_name, "decoding": self.effective_decoding()}
        return {**row, "sandbox": result.sandbox} if result.sandbox is not None else row

    # --- a whole evaluation ------------------------------------------------------------------------

    def run(self, run_dir: Path) -> dict:
        """Every task of `eval.tasks` (in-process ones here, the rest through lm-eval), each response
        graded once; per-sample rows go to `eval_samples.jsonl`, the summaries are returned."""
        if line := self.grader.judge_line():
            print(line, flush=True)
        results, rows = {}, []
        for name, task in self.tasks.items():
            if task.in_process:
                results[name], samples = self.run_in_process(name)
                rows += samples
        harness = [t for t in self.config.tasks if not (t in self.tasks and self.tasks[t].in_process)]
        if harness:   # the papers' benchmarks (and any lm-eval task) through lm-evaluation-harness
            from reasoning_sft.evaluation.lm_eval_adapter import run_lm_eval
            summaries, samples = run_lm_eval(self, harness)
            results.update(summaries)
            rows += samples
        with open(Path(run_dir) / "eval_samples.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return results

    def run_in_process(self, name: str) -> tuple[dict, list[dict]]:
        """A task generated and graded here, without lm-eval (the synthetic task after every training: no
        harness start-up, the same batches as the model's own order)."""
        task, docs, n = self.tasks[name], self.problems(name), self.config.samples_per_problem
        prompts = [self.render(task.prompt(doc, self)) for doc in docs]
        outs = self.generate(prompts, keys=[f"{name}/{i}" for i in range(len(docs))])
        rows = [self.row(name, i // n, i % n, out.pop("generation"), {"prompt": prompts[i // n], **out})
                for i, out in enumerate(outs)]
        return self.summarize(rows), rows

    def summarize(self, samples: list[dict]) -> dict:
        """Accuracy (mean pass@1) with its interval, pass@k / maj@k, token and forcing statistics."""
        ev, n = self.config, self.config.samples_per_problem
        per_problem = [samples[i:i + n] for i in range(0, len(samples), n)]
        summary = sampled_summary(per_problem, list(ev.ks), ev.bootstrap_samples, self.seed)
        lengths = [s["generated_tokens"] for s in samples if "generated_tokens" in s]
        if lengths:
            summary.update(generated_tokens_mean=mean(lengths), generated_tokens_median=median(lengths),
                           generated_tokens_max=max(lengths),
                           hit_max_new_tokens=sum(x >= ev.max_new_tokens for x in lengths))
        summary["no_answer"] = sum(s["extracted"] is None for s in samples)
        outcomes = Counter(s.get("grading") for s in samples)
        summary["grading_timeouts"], summary["grading_errors"] = outcomes["timeout"], outcomes["error"]
        summary["truncated"] = outcomes["truncated"]     # never left the thinking: wrong, counted apart
        summary["grading"] = {o: outcomes[o] for o in OUTCOMES if outcomes[o]}
        summary["grading"].update({o: c for o, c in outcomes.items() if o and o not in OUTCOMES})   # code verdicts
        summary.update(self.grader.describe())
        summary["prompt"], summary["decoding"] = ev.prompt, self.effective_decoding()
        if any("sandbox" in s for s in samples):   # code: how contained its programs were, as the grade stage says
            from reasoning_sft.evaluation.sandbox import isolation_summary
            summary["sandbox_isolation"] = isolation_summary([s.get("sandbox") for s in samples])
            summary["sandbox"] = ev.code.sandbox
        if samples and "thinking_tokens" in samples[0]:
            thinking = [s["thinking_tokens"] for s in samples]
            summary.update(thinking_tokens_mean=mean(thinking), thinking_tokens_median=median(thinking),
                           thinking_tokens_max=max(thinking), waits_appended=sum(s["waits"] for s in samples),
                           capped_share=sum(s["capped"] for s in samples) / len(samples),
                           max_thinking_tokens=max(s.get("max_thinking_tokens") or 0 for s in samples) or None)
        return summary


def generate_part(engine, ev: EvalConfig, style, sampling: dict, prompts: list[str], seeds: list[int],
                  cap: int | None) -> list[dict]:
    """One batch of Evaluator.generate on an engine (here or on a replica): plain or budget-forced."""
    from reasoning_sft.evaluation.budget_forcing import generate_with_budget
    from reasoning_sft.evaluation.generation import generate
    if ev.budget_forcing.enabled:
        outs = generate_with_budget(engine, prompts, style, ev.budget_forcing, ev.max_new_tokens, len(prompts),
                                    sampling, cap, seeds)
        return [{"generation": o.text, "generated_tokens": o.thinking_tokens + o.answer_tokens,
                 "thinking_tokens": o.thinking_tokens, "waits": o.waits, "capped": o.capped,
                 "forced_ids": o.forced_ids, "max_thinking_tokens": cap} for o in outs]
    return [{"generation": text, "generated_tokens": k} for text, k in
            generate(engine, prompts, ev.max_new_tokens, ev.batch_size, sampling, seeds)]


def result_line(task: str, metrics: dict) -> str:
    """One printed line per task: accuracy with its interval, or lm-eval's own metrics."""
    if "accuracy" not in metrics:        # a built-in lm-eval task
        return f"eval/{task}: {metrics['lm_eval']}"
    return (f"eval/{task}: accuracy {metrics['accuracy']:.3f} (95% CI {metrics['ci95_low']:.3f}-"
            f"{metrics['ci95_high']:.3f}, n={metrics['num_problems']})")


# --- the grade stage's tasks: what a row's gold is and how its response is graded -------------------

RESPONSE_FIELDS = ("generation", "response")
GOLD_FIELDS = ("gold", "answer", "gt", "gold_answer")
QUESTION_FIELDS = ("question", "problem", "prompt")


@dataclass(frozen=True)
class GradeTask:
    """A `task=` of the grade stage (registry.GRADE_TASKS): `gold(row, where, gold_field, code)` reads a
    row's gold (a DataError naming the row when it cannot), `grade(grader, items, workers)` grades every
    (response, gold, style, row) at once, returning (Grade, extra columns) per item."""
    name: str
    gold: Callable[[dict, str, str | None, CodeEvalConfig], Any]
    grade: Callable[[Grader, list, int], list[tuple[Grade, dict]]]
    by_profile: bool = False     # graded by the grading profile (maths): the summary names it
    code: bool = False           # programs run in the sandbox: pass@k and the sandbox's isolation


def pick_field(given: str | None, candidates: tuple[str, ...], row: dict, where: str, key: str) -> str:
    if given:
        if given not in row:
            raise DataError(f"{where}: no field {given!r} ({key}); the row has {sorted(row)}")
        return given
    found = next((c for c in candidates if c in row), None)
    if found is None:
        raise DataError(f"{where}: none of {list(candidates)} is a field of the row ({sorted(row)}): "
                        f"name it with {key}=")
    return found


def _answer_gold(row: dict, where: str, gold_field: str | None, code: CodeEvalConfig) -> str:
    gold = row[pick_field(gold_field, GOLD_FIELDS, row, where, "fields.gold")]
    if isinstance(gold, list):      # OlympiadBench-style lists of final answers
        gold = ", ".join(str(g).strip("$") for g in gold)
    return str(gold)


def _tests_gold(row: dict, where: str, gold_field: str | None, code: CodeEvalConfig) -> str:
    """The problem's tests are the gold: a bad problem row is named here, before any program runs."""
    from reasoning_sft.evaluation.code_tasks import problem_from_row
    return problem_from_row(row, where, code.public_only, code.max_tests_mb).input_output


def _grade_math(grader: Grader, items: list, workers: int) -> list[tuple[Grade, dict]]:
    return [(grader.math(response, gold, next((str(row[f]) for f in QUESTION_FIELDS if f in row), ""), style), {})
            for response, gold, style, row in items]   # the long1k judge reads the question


def _grade_letters(grader: Grader, items: list, workers: int) -> list[tuple[Grade, dict]]:
    return [(grader.letter(response, gold, next((str(row[f]) for f in QUESTION_FIELDS if f in row), ""), style), {})
            for response, gold, style, row in items]


def _grade_programs(grader: Grader, items: list, workers: int) -> list[tuple[Grade, dict]]:
    graded = grader.programs([(response, gold, style) for response, gold, style, _ in items], workers)
    return [(g, {"sandbox": {"results": v["results"], "message": v["metadata"].get("error_message"),
                             "isolation": v["isolation"], "seconds": v["seconds"]}}) for g, v in graded]


def _register_grade_tasks() -> None:
    from reasoning_sft.evaluation.code_tasks import CODE_TASKS
    GRADE_TASKS.add("math", GradeTask("math", _answer_gold, _grade_math, by_profile=True))
    GRADE_TASKS.add("gpqa", GradeTask("gpqa", _answer_gold, _grade_letters, by_profile=True))
    for name in CODE_TASKS:
        GRADE_TASKS.add(name, GradeTask(name, _tests_gold, _grade_programs, code=True))


_register_grade_tasks()

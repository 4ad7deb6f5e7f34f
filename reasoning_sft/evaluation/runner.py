"""Evaluation shared by `train` (eval.after_train) and the `evaluate` stage: generation for a task's
prompts (plain or budget-forced, with progress), grading each response once, the per-sample rows and
the summary. Tasks come from one registry (tasks.py); the in-process runner here serves the synthetic
task, lm_eval_tasks.py the benchmarks run through lm-evaluation-harness.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from statistics import mean, median

from omegaconf import DictConfig
from tqdm.auto import tqdm

from reasoning_sft.evaluation.budget_forcing import BudgetForcing, generate_with_budget
from reasoning_sft.data.formatting import get_style, render_prompt
from reasoning_sft.evaluation.generation import generate, sampling_kwargs
from reasoning_sft.evaluation.grading import OUTCOMES, Grade
from reasoning_sft.evaluation.metrics import sampled_summary
from reasoning_sft.evaluation.prompts import eval_prompt
from reasoning_sft.evaluation.tasks import Task


class Grader:
    """Grades each response once: lm-eval's `process_results` and the per-sample rows share it."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.cache = cfg, {}

    def __call__(self, task: Task, doc, generation: str) -> Grade:
        key = (task.name, task.target(doc, self.cfg), generation)
        if key not in self.cache:
            self.cache[key] = task.grade(generation, doc, self.cfg)
        return self.cache[key]


def run_in_process(task: Task, model, tokenizer, cfg: DictConfig, grader: Grader) -> tuple[dict, list[dict]]:
    """A task's problems generated and graded here, without lm-eval (the synthetic task after every
    training: no harness start-up, the same batches as the model's own order)."""
    docs = task.docs(cfg)
    system = eval_prompt(cfg)[0]
    prompts = [render_prompt(task.prompt(doc, cfg), tokenizer, system) for doc in docs]
    n = cfg.eval.samples_per_problem
    rows = []
    for i, out in enumerate(generate_for_eval(model, tokenizer, prompts, cfg)):
        doc = docs[i // n]
        rows.append({"task": task.name, "id": doc.get("id", i // n) if isinstance(doc, dict) else i // n,
                     "sample": i % n, "prompt": prompts[i // n], **out,
                     **graded(grader(task, doc, out["generation"]), task.target(doc, cfg), cfg)})
    return summarize_samples(rows, n, cfg), rows


def graded(result: Grade, gold: str, cfg: DictConfig) -> dict:
    """The per-sample grading columns of eval_samples.jsonl (the grade stage reads them back)."""
    row = {"extracted": result.extracted, "gold": gold, "correct": result.correct, "grading": result.outcome,
           "thinking_style": cfg.data.format.thinking_style}
    return {**row, "sandbox": result.sandbox} if result.sandbox is not None else row


def summarize_samples(samples: list[dict], n: int, cfg: DictConfig) -> dict:
    """Accuracy (mean pass@1) with its interval, pass@k / maj@k, token and forcing statistics."""
    per_problem = [samples[i:i + n] for i in range(0, len(samples), n)]
    summary = sampled_summary(per_problem, list(cfg.eval.ks), cfg.eval.bootstrap_samples, cfg.seed)
    lengths = [s["generated_tokens"] for s in samples if "generated_tokens" in s]
    if lengths:
        summary.update(generated_tokens_mean=mean(lengths), generated_tokens_median=median(lengths),
                       generated_tokens_max=max(lengths),
                       hit_max_new_tokens=sum(x >= cfg.eval.max_new_tokens for x in lengths))
    summary["no_answer"] = sum(s["extracted"] is None for s in samples)
    outcomes = Counter(s.get("grading") for s in samples)
    summary["grading_timeouts"], summary["grading_errors"] = outcomes["timeout"], outcomes["error"]
    summary["truncated"] = outcomes["truncated"]     # never left the thinking: wrong, counted apart
    summary["grading"] = {o: outcomes[o] for o in OUTCOMES if outcomes[o]}
    summary["grading"].update({o: c for o, c in outcomes.items() if o and o not in OUTCOMES})   # code verdicts
    from reasoning_sft.evaluation.profiles import describe_judge, judge_from
    summary["grading_profile"] = cfg.eval.grading.profile        # whose grader gave these verdicts
    summary["judge"] = describe_judge(judge_from(cfg.eval.grading.judge))
    if any("sandbox" in s for s in samples):   # code: how contained its programs were, as the grade stage says
        from reasoning_sft.evaluation.sandbox import isolation_summary
        summary["sandbox_isolation"] = isolation_summary([s.get("sandbox") for s in samples])
        summary["sandbox"] = cfg.eval.code.sandbox
    if "thinking_tokens" in samples[0]:
        thinking = [s["thinking_tokens"] for s in samples]
        summary.update(thinking_tokens_mean=mean(thinking), thinking_tokens_median=median(thinking),
                       thinking_tokens_max=max(thinking), waits_appended=sum(s["waits"] for s in samples),
                       capped_share=sum(s["capped"] for s in samples) / len(samples))
    return summary


def generate_for_eval(model, tokenizer, prompts: list[str], cfg: DictConfig, repeats: int | None = None) -> list[dict]:
    """`eval.samples_per_problem` generations per prompt (problem-major), plain or budget-forced
    (`eval.budget_forcing.enabled`), greedy or sampled (`eval.temperature`, `eval.top_p`), with a
    progress bar on stderr (responses done / total, generated tokens per second)."""
    n = cfg.eval.samples_per_problem if repeats is None else repeats
    prompts = [p for p in prompts for _ in range(n)]
    sampling = sampling_kwargs(cfg)
    bf_cfg = cfg.eval.budget_forcing
    forcing = bf_cfg.enabled
    bf = BudgetForcing(**{k: v for k, v in bf_cfg.items() if k != "enabled"}) if forcing else None
    style = get_style(cfg.data.format.thinking_style)
    # vLLM schedules its own batches: every prompt of the task goes to it at once, in each phase
    chunk = len(prompts) if hasattr(model, "generate_ids") else cfg.eval.batch_size
    results, tokens, t0 = [], 0, time.time()
    with tqdm(total=len(prompts), desc="generating", unit="response", file=sys.stderr,
              mininterval=0.5 if sys.stderr.isatty() else 30, disable=not prompts) as bar:
        for i in range(0, len(prompts), chunk):
            part = prompts[i:i + chunk]
            if forcing:
                outs = generate_with_budget(model, tokenizer, part, style, bf, cfg.eval.max_new_tokens,
                                            min(chunk, len(part)), sampling)
                new = [{"generation": o.text, "generated_tokens": o.thinking_tokens + o.answer_tokens,
                        "thinking_tokens": o.thinking_tokens, "waits": o.waits, "capped": o.capped,
                        "forced_ids": o.forced_ids} for o in outs]
            else:
                new = [{"generation": text, "generated_tokens": k} for text, k in
                       generate(model, tokenizer, part, cfg.eval.max_new_tokens, cfg.eval.batch_size, sampling)]
            results += new
            tokens += sum(r["generated_tokens"] for r in new)
            bar.update(len(part))
            bar.set_postfix_str(f"{tokens / max(time.time() - t0, 1e-9):.0f} tok/s")
    return results


def result_line(task: str, metrics: dict) -> str:
    """One printed line per task: accuracy with its interval, or lm-eval's own metrics."""
    if "accuracy" not in metrics:        # a built-in lm-eval task
        return f"eval/{task}: {metrics['lm_eval']}"
    return (f"eval/{task}: accuracy {metrics['accuracy']:.3f} (95% CI {metrics['ci95_low']:.3f}-"
            f"{metrics['ci95_high']:.3f}, n={metrics['num_problems']})")

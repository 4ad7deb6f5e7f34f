"""Generation and scoring shared by `train` (eval.after_train) and the `evaluate` stage.

The held-out synthetic task lives here; the papers' benchmarks run through lm-evaluation-harness.
"""

from __future__ import annotations

from collections import Counter

import sys
import time
from statistics import mean, median

import torch
from omegaconf import DictConfig, open_dict
from tqdm.auto import tqdm

from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.budget_forcing import BudgetForcing, generate_with_budget
from reasoning_sft.formatting import get_style, render_prompt
from reasoning_sft.grading import OUTCOMES, Grade, grade_response
from reasoning_sft.metrics import sampled_summary
from reasoning_sft.prompts import eval_prompt


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
             sampling: dict | None = None) -> list[tuple[str, int]]:
    """Batched, KV-cached `generate`, greedy unless `sampling` (do_sample, temperature, top_p).
    Returns (text up to the end of turn, generated tokens)."""
    if hasattr(model, "generate_ids"):   # the vLLM engine: one call, it batches itself
        from reasoning_sft.budget_forcing import generate_ids
        contexts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        return [(tokenizer.decode(ids, skip_special_tokens=False), len(ids))
                for ids, _ in generate_ids(model, tokenizer, contexts, max_new_tokens, sampling=sampling)]
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    results = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, use_cache=True,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 **(sampling or {"do_sample": False}))
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                results.append((tokenizer.decode(row, skip_special_tokens=False), len(row)))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return results


def evaluate_synthetic(model, tokenizer, cfg: DictConfig) -> tuple[dict, list[dict]]:
    """Held-out problems of the training generator's own kind (the `test` split never trained on)."""
    src = cfg.data.source
    records = generate_records(num_samples=cfg.eval.num_problems, seed=cfg.seed, split="test",
                               num_terms=src.get("num_terms", 3), digits=src.get("digits", 2))
    system, user = eval_prompt(cfg)
    prompts = [render_prompt(user.format(question=r.question), tokenizer, system) for r in records]
    n = cfg.eval.get("num_samples", 1)
    outputs = generate_for_eval(model, tokenizer, prompts, cfg)
    samples = []
    for i, out in enumerate(outputs):
        rec = records[i // n]
        gold = rec.metadata["gold_answer"]
        samples.append({"task": "synthetic", "id": rec.id, "sample": i % n, "prompt": prompts[i // n], **out,
                        **graded(grade_generation(out["generation"], gold, cfg), gold, cfg)})
    return summarize_samples(samples, n, cfg), samples


def grade_generation(generation: str, gold: str, cfg: DictConfig) -> Grade:
    """Grade on the answer section of the model's thinking style (reasoning_sft/grading.py)."""
    g = cfg.eval.get("grading") or {}
    return grade_response(generation, gold, cfg.data.format.thinking_style, g.get("truncated", "wrong"),
                          g.get("timeout_seconds", 5))


def graded(result: Grade, gold: str, cfg: DictConfig) -> dict:
    """The per-sample grading columns of eval_samples.jsonl (the grade stage reads them back)."""
    return {"extracted": result.extracted, "gold": gold, "correct": result.correct, "grading": result.outcome,
            "thinking_style": cfg.data.format.thinking_style}


def summarize_samples(samples: list[dict], n: int, cfg: DictConfig) -> dict:
    """Accuracy (mean pass@1) with its interval, pass@k / maj@k, token and forcing statistics."""
    per_problem = [samples[i:i + n] for i in range(0, len(samples), n)]
    summary = sampled_summary(per_problem, list(cfg.eval.get("ks", [1])), cfg.eval.bootstrap_samples, cfg.seed)
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
    if "thinking_tokens" in samples[0]:
        thinking = [s["thinking_tokens"] for s in samples]
        summary.update(thinking_tokens_mean=mean(thinking), thinking_tokens_median=median(thinking),
                       thinking_tokens_max=max(thinking), waits_appended=sum(s["waits"] for s in samples),
                       capped_share=sum(s["capped"] for s in samples) / len(samples))
    return summary


def sampling_kwargs(cfg: DictConfig) -> dict | None:
    """`generate` kwargs for `eval.temperature` > 0 (seeded by `seed`), None for greedy."""
    temperature = cfg.eval.get("temperature", 0.0)
    if not temperature:
        return None
    torch.manual_seed(cfg.seed)
    return {"do_sample": True, "temperature": temperature, "top_p": cfg.eval.get("top_p", 1.0)}


def generate_for_eval(model, tokenizer, prompts: list[str], cfg: DictConfig, repeats: int | None = None) -> list[dict]:
    """`eval.num_samples` generations per prompt (problem-major), plain or budget-forced
    (`eval.budget_forcing.enabled`), greedy or sampled (`eval.temperature`, `eval.top_p`), with a
    progress bar on stderr (responses done / total, generated tokens per second)."""
    n = cfg.eval.get("num_samples", 1) if repeats is None else repeats
    prompts = [p for p in prompts for _ in range(n)]
    sampling = sampling_kwargs(cfg)
    bf_cfg = cfg.eval.get("budget_forcing")
    forcing = bool(bf_cfg and bf_cfg.enabled)
    bf = BudgetForcing(**{k: v for k, v in bf_cfg.items() if k != "enabled"}) if forcing else None
    style = get_style(cfg.data.format.thinking_style)
    chunk = len(prompts) if hasattr(model, "generate_ids") else cfg.eval.batch_size   # vLLM batches itself
    results, tokens, t0 = [], 0, time.time()
    with tqdm(total=len(prompts), desc="generating", unit="response", file=sys.stderr,
              mininterval=0.5 if sys.stderr.isatty() else 30, disable=not prompts) as bar:
        for i in range(0, len(prompts), chunk):
            part = prompts[i:i + chunk]
            if forcing:
                outs = generate_with_budget(model, tokenizer, part, style, bf, cfg.eval.max_new_tokens,
                                            cfg.eval.batch_size, sampling)
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


def generation_budget(cfg: DictConfig, trained_max_seq_len: int | None) -> int:
    """`eval.max_new_tokens`, or when null the length the model was trained on (a model trained on
    256-token traces is not given 32k tokens to ramble in), else s1's 32,768."""
    if cfg.eval.get("max_new_tokens") is not None:
        return cfg.eval.max_new_tokens
    budget = trained_max_seq_len or 32768
    with open_dict(cfg):
        cfg.eval.max_new_tokens = budget
    print(f"eval.max_new_tokens=null: {budget} new tokens per response "
          f"({'the trained max_seq_len' if trained_max_seq_len else 'no trained length known'})", file=sys.stderr)
    return budget


TASKS = {"synthetic": evaluate_synthetic}


def result_line(task: str, metrics: dict) -> str:
    """One printed line per task: accuracy with its interval, or lm-eval's own metrics."""
    if "accuracy" not in metrics:        # a built-in lm-eval task
        return f"eval/{task}: {metrics['lm_eval']}"
    return (f"eval/{task}: accuracy {metrics['accuracy']:.3f} (95% CI {metrics['ci95_low']:.3f}-"
            f"{metrics['ci95_high']:.3f}, n={metrics['num_problems']})")

"""The papers' benchmarks through lm-evaluation-harness, with the project's generation and grading.

Each registry task (tasks.py) becomes an lm-eval task config here: a dict with callables over the
task's own problems, read from wherever `eval.data_dir` and friends point. `ReasoningLM` is an lm-eval
model that renders the chat template and runs plain or budget-forced generation, while lm-eval's own
Hugging Face model serves log-likelihood tasks (any built-in task such as `mmlu` also works).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sft.errors import ConfigError
from reasoning_sft.evaluation.runner import Grader, generate_for_eval, graded, run_in_process, summarize_samples
from reasoning_sft.evaluation.prompts import eval_prompt
from reasoning_sft.evaluation.tasks import TASKS, Task, source_of


def harness_config(task: Task, docs: list, cfg: DictConfig, grader: Grader, repeats: int = 1) -> dict:
    """An lm-eval task config for a registry task: its problems as the dataset (by index, so a doc is
    the task's own object, never re-typed by Arrow), its prompt and target, graded by `grader`
    (mean pass@1 over the `repeats` generations of each problem)."""
    import datasets

    def process_results(doc: dict, results: list) -> dict:
        gens = results[0] if results and isinstance(results[0], (list, tuple)) else results
        return {"exact_match": sum(grader(task, docs[doc["index"]], g).correct for g in gens) / len(gens)}

    return {
        "task": f"rsft_{task.name}",
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_dict(
            {"index": list(range(len(docs)))})}),
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": lambda doc: task.prompt(docs[doc["index"]], cfg),
        "doc_to_target": lambda doc: task.target(docs[doc["index"]], cfg),
        "process_results": process_results,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": [], "max_gen_toks": cfg.eval.max_new_tokens, "do_sample": False},
        "repeats": repeats, "metadata": {"version": 1.0},
        # lm-eval's default filter keeps the first generation only: keep all `repeats`
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}],
    }


class _QuietCustomDataset(logging.Filter):
    """lm-eval warns about `--metadata` for every task with a custom dataset: not ours to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def make_lm(model, tokenizer, cfg: DictConfig):
    """An lm-eval LM over an already loaded model: our generation, lm-eval's log-likelihoods."""
    from lm_eval.models.huggingface import HFLM

    from reasoning_sft.data.formatting import render_prompt

    vllm = hasattr(model, "generate_ids")
    base = HFLM
    if vllm:   # vLLM engine: our generation only; log-likelihood tasks need eval.backend=hf
        from lm_eval.api.model import LM as base

    class ReasoningLM(base):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            if vllm:
                raise ConfigError("eval.backend='vllm' runs generation tasks only; log-likelihood tasks "
                                  "(e.g. mmlu) need eval.backend=hf")
            return super().loglikelihood(requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            if vllm:
                raise ConfigError("eval.backend='vllm' runs generation tasks only; use eval.backend=hf")
            return super().loglikelihood_rolling(requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            # lm-eval already repeats each request `repeats` times: one generation per request here.
            system = eval_prompt(cfg)[0]
            prompts = [render_prompt(r.args[0], tokenizer, system) for r in requests]
            outs = generate_for_eval(model, tokenizer, prompts, cfg, repeats=1)
            for r, prompt, out in zip(requests, prompts, outs):
                self.details.setdefault(r.args[0], []).append({"prompt": prompt, **out})
            return [o["generation"] for o in outs]

    lm = ReasoningLM() if vllm else ReasoningLM(pretrained=model, tokenizer=tokenizer,
                                                batch_size=cfg.eval.batch_size, device=str(model.device))
    lm.details = {}
    return lm


def run_lm_eval(model, tokenizer, cfg: DictConfig, tasks: list[str], grader: Grader) -> tuple[dict, list[dict]]:
    """lm-eval's `simple_evaluate` on the tasks; returns per-task summaries and per-sample rows."""
    import lm_eval

    n = cfg.eval.samples_per_problem
    lm = make_lm(model, tokenizer, cfg)
    docs_of = {t: TASKS[t].docs(cfg) for t in tasks if t in TASKS}
    configs = [harness_config(TASKS[t], docs_of[t], cfg, grader, n) if t in TASKS else t for t in tasks]
    quiet = _QuietCustomDataset()
    logging.getLogger("lm_eval.api.task").addFilter(quiet)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=configs, limit=cfg.eval.limit, log_samples=True,
                                      bootstrap_iters=0)
    finally:
        logging.getLogger("lm_eval.api.task").removeFilter(quiet)
    summaries, rows = {}, []
    for name in tasks:
        if name not in TASKS:        # a built-in lm-eval task: its own metrics, as lm-eval reports them
            summaries[name] = {"lm_eval": {k: v for k, v in out["results"][name].items()
                                           if isinstance(v, (int, float))}}
            continue
        task, key, docs = TASKS[name], f"rsft_{name}", docs_of[name]
        task_rows = []
        for s in sorted(out["samples"].get(key, []), key=lambda s: s["doc_id"]):
            first = s["arguments"][0] if isinstance(s["arguments"], list) else s["arguments"]["gen_args_0"]
            context = first[0] if isinstance(first, (list, tuple)) else first["arg_0"]
            details = lm.details.get(context, [])
            doc = docs[s["doc"]["index"]]
            # one request per document; its `repeats` generations are listed inside it
            generations = [g for resp in s["resps"] for g in (resp if isinstance(resp, (list, tuple)) else [resp])]
            for j, gen in enumerate(generations):
                task_rows.append({"task": name, "id": s["doc_id"], "sample": j,
                                  **(details[j] if j < len(details) else {}), "generation": gen,
                                  **graded(grader(task, doc, gen), task.target(doc, cfg), cfg)})
        summary = summarize_samples(task_rows, n, cfg)
        if source := source_of(name, cfg):
            summary["source"] = source
        summary["lm_eval"] = {k: v for k, v in out["results"][key].items() if isinstance(v, (int, float))}
        summary["lm_eval_agreement"] = lm_eval_agreement(summary, out["samples"].get(key, []))
        summaries[name] = summary
        rows += task_rows
    return summaries, rows


def lm_eval_agreement(summary: dict, lm_samples: list[dict]) -> str:
    """Why lm-eval's exact_match and our accuracy differ, or that they agree. Both come from the same
    graded generations; they can differ only where lm-eval sees other documents or generations."""
    theirs = summary["lm_eval"].get("exact_match,none")
    if theirs is None:
        return "lm-eval reported no exact_match"
    if abs(theirs - summary["accuracy"]) < 1e-9:
        return "equal"
    return (f"differ: lm-eval {theirs:.4f} over {len(lm_samples)} documents, ours {summary['accuracy']:.4f} "
            f"over {summary['num_problems']} problems x {summary['samples_per_problem']} samples: lm-eval "
            "averaged other generations than eval_samples.jsonl holds (check its filters and repeats)")


def check_eval_config(cfg: DictConfig) -> None:
    """Everything about `eval` that can be known wrong before training or loading a model: each task
    exists (ours, a bundled benchmark whose file is there, GPQA with its file, or an lm-eval task),
    the prompt and the grading policy are known."""
    tasks = list(cfg.eval.tasks)
    if not tasks:
        return
    eval_prompt(cfg)
    unknown = []
    for t in tasks:
        if t in TASKS:
            TASKS[t].docs(cfg)       # its data is there and readable (a ConfigError names the key)
        else:
            unknown.append(t)
    if unknown:   # lm-eval's own registry (indexing its task files takes a few seconds)
        from lm_eval.tasks import TaskManager
        manager = TaskManager()
        known = set(manager.all_tasks)
        missing = [t for t in unknown if t not in known]
        if missing:
            raise ConfigError(f"eval.tasks: {missing[0]!r} is not a task: expected one of "
                              f"{sorted(TASKS)} or an lm-eval task name")
        for name in unknown:
            load_builtin_task(name, manager)


def load_builtin_task(name: str, manager) -> None:
    """Build an lm-eval built-in task as the evaluation will (its code, its dataset), so that a missing
    package or an unreachable hub dataset is one line naming it and how to get it, before any training
    or model load; never lm-eval's traceback."""
    from lm_eval.tasks import get_task_dict
    try:
        get_task_dict([name], manager)
    except ModuleNotFoundError as e:
        raise ConfigError(f"eval.tasks: lm-eval's {name!r} needs the package {e.name!r}, which is not installed "
                          f"(pip install {e.name}; make install brings what the tasks the docs name need)") from None
    except Exception as e:  # noqa: BLE001 - the hub's many failures (offline, gated, missing): one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        path = _dataset_path(name, manager)
        raise ConfigError(f"eval.tasks: lm-eval's {name!r} could not load its dataset"
                          + (f" {path!r}" if path else "") + f" ({type(e).__name__}: {first}); it comes from the "
                          "Hugging Face hub: load it once where the hub is reachable (it is then cached) and run "
                          "with HF_DATASETS_OFFLINE=1 here") from None


def _dataset_path(name: str, manager) -> str | None:
    """The hub dataset an lm-eval task reads, from its YAML (None when that is not simple to read)."""
    try:
        import yaml
        entry = manager.task_index[name]
        path = entry.get("yaml_path") if isinstance(entry, dict) else None
        if not path or path == -1:
            return None
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=yaml.BaseLoader).get("dataset_path")
    except Exception:  # noqa: BLE001 - only for the message
        return None


def run_tasks(model, tokenizer, cfg: DictConfig, run_dir: Path) -> dict:
    """Run every task of `eval.tasks` (in-process ones here, the rest through lm-eval), each response
    graded once; per-sample results go to `eval_samples.jsonl`."""
    from reasoning_sft.evaluation.profiles import judge_from, judge_line
    if line := judge_line(cfg.eval.grading.profile, judge_from(cfg.eval.grading.judge)):
        print(line, flush=True)
    grader = Grader(cfg)
    results, rows = {}, []
    for name in (t for t in cfg.eval.tasks if t in TASKS and TASKS[t].in_process):
        results[name], samples = run_in_process(TASKS[name], model, tokenizer, cfg, grader)
        rows += samples
    harness = [t for t in cfg.eval.tasks if not (t in TASKS and TASKS[t].in_process)]
    if harness:   # the papers' benchmarks (and any lm-eval task) through lm-evaluation-harness
        summaries, samples = run_lm_eval(model, tokenizer, cfg, harness, grader)
        results.update(summaries)
        rows += samples
    with open(run_dir / "eval_samples.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return results

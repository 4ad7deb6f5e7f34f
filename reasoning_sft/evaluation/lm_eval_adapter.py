"""The papers' benchmarks through lm-evaluation-harness: an adapter of the `Evaluator` (evaluator.py).

Each registry task (tasks.py) becomes an lm-eval task config here: a dict with callables over the
evaluator's problems of that task (loaded once), by index, so a document keeps its identity through the
harness. `ReasoningLM` is an lm-eval model that renders the evaluator's prompt and generates with its
engine (plain or budget-forced), recording each generation under its (task, problem) identity; lm-eval's
own Hugging Face model serves log-likelihood tasks (any built-in task such as `mmlu` also works).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from reasoning_sft.errors import ConfigError
from reasoning_sft.evaluation.tasks import source_of

PREFIX = "rsft_"   # our tasks' names inside lm-eval


def harness_config(ev, name: str, repeats: int = 1) -> dict:
    """An lm-eval task config for the registry task `name`: its problems as the dataset (by index, so a
    doc is the task's own object, never re-typed by Arrow), its prompt and target, graded by the
    evaluator (mean pass@1 over the `repeats` generations of each problem)."""
    import datasets
    task, docs = ev.tasks[name], ev.problems(name)

    def process_results(doc: dict, results: list) -> dict:
        gens = results[0] if results and isinstance(results[0], (list, tuple)) else results
        return {"exact_match": sum(ev.grade(name, doc["index"], g).correct for g in gens) / len(gens)}

    return {
        "task": PREFIX + name,
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_dict(
            {"index": list(range(len(docs)))})}),
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": lambda doc: task.prompt(docs[doc["index"]], ev),
        "doc_to_target": lambda doc: task.target(docs[doc["index"]], ev),
        "process_results": process_results,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": [], "max_gen_toks": ev.config.max_new_tokens, "do_sample": False},
        "repeats": repeats, "metadata": {"version": 1.0},
        # lm-eval's default filter keeps the first generation only: keep all `repeats`
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}],
    }


class _QuietCustomDataset(logging.Filter):
    """lm-eval warns about `--metadata` for every task with a custom dataset: not ours to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def make_lm(ev):
    """An lm-eval LM over the evaluator's engine: our generation, lm-eval's log-likelihoods (HF only)."""
    from lm_eval.api.model import LM
    from lm_eval.models.huggingface import HFLM

    engine = ev.engine
    hf = engine.hf_model is not None   # a transformers model in this process serves log-likelihoods

    class ReasoningLM(HFLM if hf else LM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            if not hf:
                raise ConfigError(f"eval.backend={ev.config.backend!r} with eval.data_parallel_size="
                                  f"{ev.config.data_parallel_size} runs generation tasks only; log-likelihood tasks "
                                  "(e.g. mmlu) need eval.backend=hf and eval.data_parallel_size=1")
            return super().loglikelihood(requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            if not hf:
                raise ConfigError(f"eval.backend={ev.config.backend!r} runs generation tasks only; use eval.backend=hf")
            return super().loglikelihood_rolling(requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            # lm-eval already repeats each request `repeats` times: one generation per request here, kept
            # under the request's identity (its task and our problem index), never matched back by text;
            # the k-th request of a problem is its sample k (its seed: decoding.sample_seed)
            prompts = [ev.render(r.args[0]) for r in requests]
            ids = [(r.task_name, r.doc["index"] if isinstance(r.doc, dict) and "index" in r.doc else r.doc_id)
                   for r in requests]
            keys = []
            for task_doc in ids:
                keys.append(f"{task_doc[0]}/{task_doc[1]}/{self.drawn[task_doc]}")
                self.drawn[task_doc] += 1
            outs = ev.generate(prompts, repeats=1, keys=keys)
            for task_doc, prompt, out in zip(ids, prompts, outs):
                self.details[task_doc].append({"prompt": prompt, **out})
            return [o["generation"] for o in outs]

    lm = ReasoningLM(pretrained=engine.hf_model, tokenizer=engine.tokenizer, batch_size=ev.config.batch_size,
                     device=str(engine.hf_model.device)) if hf else ReasoningLM()
    lm.details, lm.drawn = defaultdict(list), Counter()
    return lm


def run_lm_eval(ev, names: list[str]) -> tuple[dict, list[dict]]:
    """lm-eval's `simple_evaluate` on the tasks; returns per-task summaries and per-sample rows."""
    import lm_eval

    n = ev.config.samples_per_problem
    lm = make_lm(ev)
    configs = [harness_config(ev, t, n) if t in ev.tasks else t for t in names]
    quiet = _QuietCustomDataset()
    logging.getLogger("lm_eval.api.task").addFilter(quiet)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=configs, limit=ev.config.limit, log_samples=True,
                                      bootstrap_iters=0)
    finally:
        logging.getLogger("lm_eval.api.task").removeFilter(quiet)
    summaries, rows = {}, []
    for name in names:
        if name not in ev.tasks:        # a built-in lm-eval task: its own metrics, as lm-eval reports them
            summaries[name] = {"lm_eval": {k: v for k, v in out["results"][name].items()
                                           if isinstance(v, (int, float))}}
            continue
        key, task_rows = PREFIX + name, []
        for s in sorted(out["samples"].get(key, []), key=lambda s: s["doc_id"]):
            index = s["doc"]["index"]
            details = lm.details.get((key, index), [])
            # one request per document; its `repeats` generations are listed inside it
            generations = [g for resp in s["resps"] for g in (resp if isinstance(resp, (list, tuple)) else [resp])]
            for j, gen in enumerate(generations):
                detail = {k: v for k, v in (details[j] if j < len(details) else {}).items() if k != "generation"}
                task_rows.append(ev.row(name, index, j, gen, detail, row_id=s["doc_id"]))
        summary = ev.summarize(task_rows)
        if source := source_of(ev.tasks[name], ev.config.data_dir):
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


def check_builtin_tasks(names: list[str]) -> None:
    """lm-eval's own tasks named in `eval.tasks` exist in its registry and load (indexing its task files
    takes a few seconds), before any training or model load."""
    from lm_eval.tasks import TaskManager

    from reasoning_sft.registry import EVAL_TASKS
    manager = TaskManager()
    known = set(manager.all_tasks)
    missing = [t for t in names if t not in known]
    if missing:
        raise ConfigError(f"eval.tasks: {missing[0]!r} is not a task: expected one of "
                          f"{sorted(EVAL_TASKS.names())} or an lm-eval task name")
    for name in names:
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

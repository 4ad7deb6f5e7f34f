"""The papers' benchmarks through lm-evaluation-harness, with the project's generation and grading.

Tasks are lm-eval task configs built here (dicts with callables), so they read the files under
`eval.data_dir` wherever that is; `ReasoningLM` is an lm-eval model (registered as `reasoning_sft`)
that renders the chat template and runs plain or budget-forced generation, while lm-eval's own
Hugging Face model serves log-likelihood tasks (any built-in task such as `mmlu` also works).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sft.code_tasks import CODE_TASKS
from reasoning_sft.errors import ConfigError
from reasoning_sft.evaluation import TASKS, generate_for_eval, grade_generation, graded, summarize_samples
from reasoning_sft.grading import Grade, grade_letter_response
from reasoning_sft.prompts import eval_prompt

# name -> (file in eval.data_dir, question field, gold answer field)
BENCHMARKS = {
    "aime24": ("aime24.jsonl", "problem", "answer"),
    "aime25": ("aime25.jsonl", "problem", "answer"),
    "amc23": ("amc23.jsonl", "problem", "answer"),
    "math500": ("math500.jsonl", "problem", "answer"),
    "olympiadbench": ("olympiadbench.jsonl", "question", "final_answer"),
}
OURS = set(BENCHMARKS) | {"gpqa_diamond"} | set(CODE_TASKS)


def gold_of(doc: dict, field: str) -> str:
    gold = doc[field]
    if isinstance(gold, list):          # OlympiadBench: a list of final answers, "$...$"-wrapped
        gold = ", ".join(str(g).strip("$") for g in gold)
    return str(gold)


GPQA_PROMPT = ("{question}\n\n{choices}\n\nPlease reason step by step, and put the letter of the correct "
               "choice within \\boxed{{}}.")
LETTERS = "ABCD"


def gpqa_choices(doc: dict, seed: int) -> tuple[list[str], str]:
    """The four choices in a seeded order fixed per question, and the correct letter."""
    import hashlib
    import random
    choices = [doc["Correct Answer"], doc["Incorrect Answer 1"], doc["Incorrect Answer 2"], doc["Incorrect Answer 3"]]
    rng = random.Random(f"{seed}-{hashlib.sha256(doc['Question'].encode()).hexdigest()}")
    order = list(range(4))
    rng.shuffle(order)
    return [str(choices[i]).strip() for i in order], LETTERS[order.index(0)]


class Grader:
    """Grades each generation once: lm-eval's `process_results` and the per-sample rows share it."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.cache, self.code_problems = cfg, {}, {}

    def math(self, generation: str, gold: str) -> Grade:
        key = ("math", generation, gold)
        if key not in self.cache:
            self.cache[key] = grade_generation(generation, gold, self.cfg)
        return self.cache[key]

    def code(self, generation: str, problem_id: str) -> Grade:
        """The response's program run on the problem's tests in the sandbox (verdict as outcome)."""
        from reasoning_sft.code_tasks import extract_code
        from reasoning_sft.sandbox import Limits, run_program
        key = ("code", generation, problem_id)
        if key not in self.cache:
            c = self.cfg.eval.code
            program = extract_code(generation, self.cfg.data.format.thinking_style)
            v = run_program(program, self.code_problems[problem_id].input_output,
                            Limits(c.timeout_seconds, c.memory_mb, c.file_mb, c.processes))
            self.cache[key] = Grade(v["verdict"] == "passed", program, v["verdict"])
        return self.cache[key]

    def letter(self, generation: str, gold: str) -> Grade:
        return grade_letter_response(generation, gold, self.cfg.data.format.thinking_style,
                                     (self.cfg.eval.get("grading") or {}).get("truncated", "wrong"))


def gpqa_task_config(path: str, seed: int, max_new_tokens: int, grader: Grader, repeats: int = 1) -> dict:
    """GPQA-Diamond from the user's copy (the official CSV: Question, Correct Answer, Incorrect
    Answer 1-3). Its authors ask that examples not be posted in plain text: it is never bundled."""
    if not path or not Path(path).is_file():
        raise ConfigError(f"eval.gpqa_path={path!r}: GPQA-Diamond is read only from your own copy "
                                "(gpqa_diamond.csv); set eval.gpqa_path")

    def doc_to_text(doc: dict) -> str:
        choices, _ = gpqa_choices(doc, seed)
        return GPQA_PROMPT.format(question=doc["Question"].strip(),
                                  choices="\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)))

    def process_results(doc: dict, results: list) -> dict:
        gold = gpqa_choices(doc, seed)[1]
        gens = results[0] if results and isinstance(results[0], (list, tuple)) else results
        return {"exact_match": sum(grader.letter(g, gold).correct for g in gens) / len(gens)}

    return {
        "task": "rsft_gpqa_diamond", "dataset_path": "csv", "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": doc_to_text,
        "doc_to_target": lambda doc: gpqa_choices(doc, seed)[1], "process_results": process_results,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False},
        "repeats": repeats, "metadata": {"version": 1.0},
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}],
    }


def load_code_problems(cfg: DictConfig) -> dict:
    """The problems of `eval.code.path` (LiveCodeBench's released rows) inside the release window."""
    from reasoning_sft.code_tasks import in_window, problem_from_row
    from reasoning_sft.data.loaders import read_rows
    c = cfg.eval.get("code")
    if c is None:
        raise ConfigError("eval.code: the code tasks' settings are missing: use eval=code (conf/eval/code.yaml)")
    if not c.get("path") or not Path(str(c.path)).is_file():
        raise ConfigError(f"eval.code.path={c.get('path')!r}: a jsonl of LiveCodeBench problems (its released "
                          "format) is needed for the code tasks")
    problems = {}
    for where, row in read_rows(str(c.path)):
        p = problem_from_row(row, where, bool(c.get("public_only", False)))
        if in_window(p, c.get("start_date"), c.get("end_date")):
            problems[p.id] = p
    if not problems:
        raise ConfigError(f"eval.code.path={c.path}: no problem between eval.code.start_date={c.get('start_date')} "
                          f"and eval.code.end_date={c.get('end_date')}")
    return problems


def code_task_config(name: str, cfg: DictConfig, grader: Grader, repeats: int = 1) -> dict:
    """LiveCodeBench (or APPS / TACO rows in its format) from a local file: SkyThought's prompt, the
    last code block of the answer run on every test in the sandbox; pass@1 over the repeats."""
    from reasoning_sft.code_tasks import problem_prompt
    grader.code_problems.update(load_code_problems(cfg))
    problems = grader.code_problems

    def process_docs(dataset):
        return dataset.filter(lambda row: str(row.get("question_id")) in problems)

    def process_results(doc: dict, results: list) -> dict:
        gens = results[0] if results and isinstance(results[0], (list, tuple)) else results
        return {"exact_match": sum(grader.code(g, str(doc["question_id"])).correct for g in gens) / len(gens)}

    return {
        "task": f"rsft_{name}", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(cfg.eval.code.path)}},
        "test_split": "test", "output_type": "generate_until", "process_docs": process_docs,
        "doc_to_text": lambda doc: problem_prompt(problems[str(doc["question_id"])]),
        "doc_to_target": lambda doc: str(doc["question_id"]), "process_results": process_results,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": [], "max_gen_toks": cfg.eval.max_new_tokens, "do_sample": False},
        "repeats": repeats, "metadata": {"version": 1.0},
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}],
    }


def task_config(name: str, data_dir: str, max_new_tokens: int, grader: Grader, user_template: str,
                repeats: int = 1) -> dict:
    file, question, answer = BENCHMARKS[name]
    path = Path(data_dir) / file
    if not path.is_file():
        raise ConfigError(f"eval.tasks: {name} reads {path}, which does not exist (set eval.data_dir)")

    def process_results(doc: dict, results: list) -> dict:   # mean pass@1 over the repeats
        gold = gold_of(doc, answer)
        gens = results[0] if results and isinstance(results[0], (list, tuple)) else results
        return {"exact_match": sum(grader.math(g, gold).correct for g in gens) / len(gens)}

    return {
        "task": f"rsft_{name}", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": lambda doc: user_template.format(question=doc[question]),
        "doc_to_target": lambda doc: gold_of(doc, answer),
        "process_results": process_results,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "generation_kwargs": {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False},
        "repeats": repeats, "metadata": {"version": 1.0},
        # lm-eval's default filter keeps the first generation only: keep all `repeats`
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}],
    }


def make_lm(model, tokenizer, cfg: DictConfig):
    """An lm-eval LM over an already loaded model: our generation, lm-eval's log-likelihoods."""
    from lm_eval.models.huggingface import HFLM

    from reasoning_sft.formatting import render_prompt

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


def run_lm_eval(model, tokenizer, cfg: DictConfig, tasks: list[str]) -> tuple[dict, list[dict]]:
    """lm-eval's `simple_evaluate` on the tasks; returns per-task summaries and per-sample rows."""
    import lm_eval


    n = cfg.eval.get("num_samples", 1)
    lm = make_lm(model, tokenizer, cfg)
    grader = Grader(cfg)
    user_template = eval_prompt(cfg)[1]

    def config(t: str):
        if t == "gpqa_diamond":
            return gpqa_task_config(cfg.eval.get("gpqa_path"), cfg.seed, cfg.eval.max_new_tokens, grader, n)
        if t in BENCHMARKS:
            return task_config(t, cfg.eval.data_dir, cfg.eval.max_new_tokens, grader, user_template, n)
        if t in CODE_TASKS:
            return code_task_config(t, cfg, grader, n)
        return t
    configs = [config(t) for t in tasks]
    out = lm_eval.simple_evaluate(model=lm, tasks=configs, limit=cfg.eval.get("limit"), log_samples=True,
                                  bootstrap_iters=0)
    summaries, rows = {}, []
    for task in tasks:
        if task not in OURS:         # a built-in lm-eval task: its own metrics, as lm-eval reports them
            summaries[task] = {"lm_eval": {k: v for k, v in out["results"][task].items()
                                           if isinstance(v, (int, float))}}
            continue
        key = f"rsft_{task}"
        verdict = grader.letter if task == "gpqa_diamond" else grader.code if task in CODE_TASKS else grader.math
        task_rows = []
        for s in sorted(out["samples"].get(key, []), key=lambda s: s["doc_id"]):
            first = s["arguments"][0] if isinstance(s["arguments"], list) else s["arguments"]["gen_args_0"]
            context = first[0] if isinstance(first, (list, tuple)) else first["arg_0"]
            details = lm.details.get(context, [])
            # one request per document; its `repeats` generations are listed inside it
            generations = [g for resp in s["resps"] for g in (resp if isinstance(resp, (list, tuple)) else [resp])]
            for j, gen in enumerate(generations):
                gold = str(s["target"])
                task_rows.append({"task": task, "id": s["doc_id"], "sample": j,
                                  **(details[j] if j < len(details) else {}), "generation": gen,
                                  **graded(verdict(gen, gold), gold, cfg)})
        summary = summarize_samples(task_rows, n, cfg)
        summary["lm_eval"] = {k: v for k, v in out["results"][key].items() if isinstance(v, (int, float))}
        summary["lm_eval_agreement"] = lm_eval_agreement(summary, out["samples"].get(key, []))
        summaries[task] = summary
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
    from reasoning_sft.grading import TRUNCATED_POLICIES
    tasks = list(cfg.eval.get("tasks") or [])
    if not tasks:
        return
    eval_prompt(cfg)
    truncated = (cfg.eval.get("grading") or {}).get("truncated", "wrong")
    if truncated not in TRUNCATED_POLICIES:
        raise ConfigError(f"eval.grading.truncated={truncated!r}: expected one of {list(TRUNCATED_POLICIES)}")
    unknown = []
    for t in tasks:
        if t in TASKS:
            continue
        if t == "gpqa_diamond":
            path = cfg.eval.get("gpqa_path")
            if not path or not Path(path).is_file():
                raise ConfigError(f"eval.gpqa_path={path!r}: GPQA-Diamond is read only from your own copy "
                                  "(gpqa_diamond.csv); set eval.gpqa_path")
        elif t in CODE_TASKS:
            from reasoning_sft.sandbox import require_harness
            require_harness()
            load_code_problems(cfg)
        elif t in BENCHMARKS:
            path = Path(str(cfg.eval.data_dir)) / BENCHMARKS[t][0]
            if not path.is_file():
                raise ConfigError(f"eval.tasks: {t} reads {path}, which does not exist (set eval.data_dir)")
        else:
            unknown.append(t)
    if unknown:   # lm-eval's own registry (indexing its task files takes a few seconds)
        from lm_eval.tasks import TaskManager
        known = set(TaskManager().all_tasks)
        missing = [t for t in unknown if t not in known]
        if missing:
            raise ConfigError(f"eval.tasks: {missing[0]!r} is not a task: expected one of "
                              f"{sorted(set(TASKS) | OURS)} or an lm-eval task name")


def run_tasks(model, tokenizer, cfg: DictConfig, run_dir: Path) -> dict:
    """Run every task of `eval.tasks`; per-sample results go to `eval_samples.jsonl`."""
    results, rows = {}, []
    for task in (t for t in cfg.eval.tasks if t in TASKS):
        results[task], samples = TASKS[task](model, tokenizer, cfg)
        rows += samples
    harness = [t for t in cfg.eval.tasks if t not in TASKS]
    if harness:   # the papers' benchmarks (and any lm-eval task) through lm-evaluation-harness
        summaries, samples = run_lm_eval(model, tokenizer, cfg, harness)
        results.update(summaries)
        rows += samples
    with open(run_dir / "eval_samples.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return results

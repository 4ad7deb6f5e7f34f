"""Every evaluation task, registered by name in registry.EVAL_TASKS. A `Task` says where its problems
come from, how one is asked, what its answer is and how a response is graded, each reading only the
`Evaluator` it is handed (evaluator.py: the eval group, the seed, the prompt and the grader, bound once);
the in-process path (the synthetic task run after every training) and the lm-evaluation-harness adapter
(lm_eval_adapter.py, the papers' benchmarks) both run these entries through it. Adding a benchmark is
one `EVAL_TASKS.add(...)` here (or in the user's own module) plus its data file.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reasoning_sft.evaluation.code_tasks import CODE_TASKS, in_window, problem_from_row, problem_prompt
from reasoning_sft.data.loaders import read_rows
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.errors import ConfigError
from reasoning_sft.evaluation.grading import Grade
from reasoning_sft.registry import EVAL_TASKS

Evaluator = Any   # evaluator.Evaluator, which runs these tasks (named here, never imported: it imports them)


@dataclass(frozen=True)
class Task:
    name: str
    docs: Callable[[Evaluator], list[Any]]        # the problems; a ConfigError naming the key when missing
    prompt: Callable[[Any, Evaluator], str]       # the user turn for one problem
    target: Callable[[Any, Evaluator], str]       # what a response is graded against (gold, letter, problem id)
    grade: Callable[[str, Any, Evaluator], Grade]
    in_process: bool = False                      # run without lm-eval (the synthetic task, after every training)
    source: Any = None                            # a HubSet: where its problems come from by default


def asked(field: str) -> Callable[[Any, Evaluator], str]:
    """The user turn of the evaluation's prompt (`eval.prompt`) around a problem's `field`."""
    return lambda doc, ev: ev.user_template.format(question=doc[field])


# --- the synthetic task: held-out problems of the training generator's own kind ---------------------

def synthetic_docs(ev: Evaluator) -> list[dict]:
    """The `test` split of the generator (never trained on), `eval.num_problems` of them, in the shape
    the model was trained on (`num_terms`, `digits` of the training data's source; else the defaults)."""
    records = generate_records(num_problems=ev.config.num_problems, seed=ev.seed, split="test", **ev.synthetic_shape)
    return [{"id": r.id, "question": r.question, "answer": r.metadata["gold_answer"]} for r in records]


# --- math benchmarks: the hub set the papers' evaluation code loads, or a local jsonl --------------

@dataclass(frozen=True)
class HubSet:
    """Where the papers' released evaluation code loads a benchmark: `datasets.load_dataset(path, config,
    split=split, revision=revision)` for each config (concatenated), rows kept where `keep[0]` holds
    `keep[1]`, the problem and answer fields renamed to the task's."""
    path: str
    configs: tuple
    split: str
    question: str
    answer: str
    origin: str                          # the released file that loads it
    keep: tuple | None = None
    revision: str | None = None          # None: the hub's current main (docs/data.md: neither paper pins one)

    def describe(self) -> str:
        parts = [f"{self.path}" + (f" ({', '.join(self.configs)})" if self.configs != (None,) else ""),
                 f"split {self.split}"]
        if self.keep:
            parts.append(f"rows whose {self.keep[0]} holds {self.keep[1]!r}")
        return ", ".join(parts) + f"; as {self.origin}"


def load_hub_set(hub: HubSet, question: str, answer: str) -> list[dict]:
    """The set's rows through `datasets` (its cache; HF_DATASETS_OFFLINE=1 reads only the cache)."""
    import datasets
    rows = []
    for config in hub.configs:
        for row in datasets.load_dataset(hub.path, config, split=hub.split, revision=hub.revision):
            if hub.keep and hub.keep[1] not in str(row.get(hub.keep[0], "")):
                continue
            rows.append({**row, question: row[hub.question], answer: row[hub.answer]})
    return rows


def math_benchmark(name: str, file: str, question: str, answer: str, hub: HubSet) -> Task:
    def docs(ev: Evaluator) -> list[dict]:
        """`eval.data_dir/<file>` when it is there (a local copy), else the hub set (cached, offline-aware)."""
        local = Path(str(ev.config.data_dir)) / file if ev.config.data_dir else None
        if local is not None and local.is_file():
            return [row for _, row in read_rows(str(local))]
        try:
            return load_hub_set(hub, question, answer)
        except Exception as e:   # offline without a cached copy, no network, a moved dataset: say where from
            here = f"{local} does not exist and " if local is not None else ""
            raise ConfigError(
                f"eval.tasks: {name}: {here}its hub set could not be read ({type(e).__name__}: {str(e)[:200]}). "
                f"It comes from {hub.describe()}. To run offline, read it once where the hub is reachable "
                f"(python -c \"import datasets; datasets.load_dataset('{hub.path}', "
                f"{hub.configs[0]!r}, split='{hub.split}')\") and set HF_DATASETS_OFFLINE=1, or write a jsonl with "
                f"fields {question!r} and {answer!r} to DIR/{file} and set eval.data_dir=DIR") from None

    def target(doc: dict, ev: Evaluator) -> str:
        gold = doc[answer]
        if isinstance(gold, list):          # OlympiadBench: a list of final answers, "$...$"-wrapped; the
            gold = str(gold[0]).strip("$")  # first, as SkyThought and the Qwen2.5-Math harness grade it
        return str(gold)

    return Task(name, docs, asked(question), target,
                lambda generation, doc, ev: ev.grader.math(generation, target(doc, ev), doc[question]), source=hub)


def source_of(task: Task, data_dir: str | None) -> str | None:
    """Where a task's problems were read from: the local file in `eval.data_dir`, or the hub set."""
    if task.source is None:
        return None
    local = Path(str(data_dir)) / f"{task.name}.jsonl" if data_dir else None
    return str(local) if local is not None and local.is_file() else f"hub: {task.source.describe()}"


SKYTHOUGHT = "SkyThought skythought/evals/tasks/"
S1 = "s1 eval/lm-evaluation-harness/lm_eval/tasks/"
HUB_SETS = {
    # s1's own sets (its lm-eval fork's task files; process_docs: problem / answer)
    "aime24_figures": HubSet("simplescaling/aime24_figures", ("default",), "train", "problem", "answer",
                             S1 + "aime/aime24_figures.yaml"),
    "aime24_nofigures": HubSet("simplescaling/aime24_nofigures", ("default",), "train", "problem", "answer",
                               S1 + "aime/aime24_nofigures.yaml"),
    "aime25_nofigures": HubSet("TIGER-Lab/AIME25", ("default",), "train", "problem", "answer",
                               S1 + "aime/aime25_nofigures.yaml"),
    "openaimath": HubSet("simplescaling/openaimath", (None,), "test", "problem", "answer",
                         S1 + "openai_math/openai_math.yaml"),
    "aime24": HubSet("AI-MO/aimo-validation-aime", (None,), "train", "problem", "answer",
                     SKYTHOUGHT + "aime/aime24.yaml", keep=("url", "2024")),
    "aime25": HubSet("opencompass/AIME2025", ("AIME2025-I", "AIME2025-II"), "test", "question", "answer",
                     SKYTHOUGHT + "aime/aime25_1.yaml + aime25_2.yaml"),
    "amc23": HubSet("AI-MO/aimo-validation-amc", (None,), "train", "problem", "answer",
                    SKYTHOUGHT + "amc23/amc23.yaml + amc23_handler.py", keep=("url", "2023")),
    "math500": HubSet("qq8933/MATH500", (None,), "test", "problem", "answer", SKYTHOUGHT + "math/math500.yaml"),
    "olympiadbench": HubSet("Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",), "train", "question", "final_answer",
                            SKYTHOUGHT + "olympiadbench/olympiadbench_math_en.yaml"),
}


# --- GPQA-Diamond: the user's own copy, four choices in a seeded order ---------------------------------

GPQA_PROMPT = ("{question}\n\n{choices}\n\nPlease reason step by step, and put the letter of the correct "
               "choice within \\boxed{{}}.")
LETTERS = "ABCD"


def gpqa_choices(doc: dict, seed: int) -> tuple[list[str], str]:
    """Ours: the four choices in a seeded order fixed per question (stripped), and the correct letter."""
    choices = [doc["Correct Answer"], doc["Incorrect Answer 1"], doc["Incorrect Answer 2"], doc["Incorrect Answer 3"]]
    rng = random.Random(f"{seed}-{hashlib.sha256(doc['Question'].encode()).hexdigest()}")
    order = list(range(4))
    rng.shuffle(order)
    return [str(choices[i]).strip() for i in order], LETTERS[order.index(0)]


def s1_gpqa_choices(rows: list[dict]) -> list[tuple[list[str], str]]:
    """s1's (gpqa/openai/utils.py `process_docs`): [incorrect 1, 2, 3, correct] shuffled by Python's
    `random` as lm-eval seeds it (random_seed 0), document after document in the set's order; not stripped."""
    rng = random.Random(0)
    out = []
    for doc in rows:
        choices = [doc["Incorrect Answer 1"], doc["Incorrect Answer 2"], doc["Incorrect Answer 3"], doc["Correct Answer"]]
        rng.shuffle(choices)
        out.append((choices, LETTERS[choices.index(doc["Correct Answer"])]))
    return out


def gpqa_docs(ev: Evaluator) -> list[dict]:
    """The official CSV (Question, Correct Answer, Incorrect Answer 1-3), each row with its choices in the
    order its prompt shows them (`eval.prompt=s1`: s1's; else ours). Its authors ask that examples not be
    posted in plain text: it is never bundled."""
    path = ev.config.gpqa_path
    if not path or not Path(str(path)).is_file():
        raise ConfigError(f"eval.gpqa_path={path!r}: GPQA-Diamond is read only from your own copy "
                          "(gpqa_diamond.csv); set eval.gpqa_path")
    with open(str(path), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows, 2):
        missing = [c for c in ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                               "Incorrect Answer 3") if c not in row]
        if missing:
            raise ConfigError(f"{path}:{i}: no {missing[0]!r} column (eval.gpqa_path: GPQA-Diamond as released)")
    orders = s1_gpqa_choices(rows) if ev.config.prompt == "s1" else [gpqa_choices(r, ev.seed) for r in rows]
    return [{**row, "choices": choices, "letter": letter} for row, (choices, letter) in zip(rows, orders)]


# s1's lm-eval fork, tasks/gpqa/openai/utils.py:12 (QUERY_TEMPLATE): no instruction, `A)` labels
S1_GPQA_PROMPT = "{question}\n\nA) {c[0]}\nB) {c[1]}\nC) {c[2]}\nD) {c[3]}"


def gpqa_prompt(doc: dict, ev: Evaluator) -> str:
    if ev.config.prompt == "s1":
        return S1_GPQA_PROMPT.format(question=doc["Question"], c=doc["choices"])
    return GPQA_PROMPT.format(question=doc["Question"].strip(),
                              choices="\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(doc["choices"])))


def grade_gpqa(generation: str, doc: dict, ev: Evaluator) -> Grade:
    """The grading profile's letter (s1's reading and judge, Long1K's judge, or ours); the judges read the
    question as s1's judge is shown it (QUERY_TEMPLATE_API)."""
    from reasoning_sft.evaluation.profiles import S1_GPQA_QUESTION
    return ev.grader.letter(generation, doc["letter"], S1_GPQA_QUESTION.format(question=doc["Question"], c=doc["choices"]))


# --- code: LiveCodeBench (or APPS / TACO rows in its format), run in the sandbox ----------------------

def code_docs(ev: Evaluator) -> list:
    """The problems of `eval.code.path` (LiveCodeBench's released rows) inside the release window."""
    from reasoning_sft.evaluation.sandbox import check_sandbox, require_harness
    require_harness()
    c = ev.config.code   # every eval config has it (reasoning_sft/schema.py: CodeEvalConfig)
    check_sandbox(c)   # strict and uncontainable: refused before any program runs
    if not c.path or not Path(str(c.path)).is_file():
        raise ConfigError(f"eval.code.path={c.path!r}: a jsonl of LiveCodeBench problems (its released "
                          "format) is needed for the code tasks")
    problems = [p for p in (problem_from_row(row, where, c.public_only, c.max_tests_mb)
                            for where, row in read_rows(str(c.path)))
                if in_window(p, c.start_date, c.end_date)]
    if not problems:
        raise ConfigError(f"eval.code.path={c.path}: no problem between eval.code.start_date={c.start_date} "
                          f"and eval.code.end_date={c.end_date}")
    return problems


def grade_code(generation: str, problem, ev: Evaluator) -> Grade:
    """The last code block of the answer run on every test of the problem in the sandbox; the
    verdict (passed, wrong_answer, timeout, ...) is the outcome."""
    return ev.grader.code(generation, problem.input_output)


for _task in (
    Task("synthetic", synthetic_docs, asked("question"), lambda doc, ev: doc["answer"],
         lambda generation, doc, ev: ev.grader.math(generation, doc["answer"], doc["question"]), in_process=True),
    *(math_benchmark(name, *spec, HUB_SETS[name]) for name, spec in {
        "aime24": ("aime24.jsonl", "problem", "answer"),
        "aime25": ("aime25.jsonl", "problem", "answer"),
        "amc23": ("amc23.jsonl", "problem", "answer"),
        "math500": ("math500.jsonl", "problem", "answer"),
        "olympiadbench": ("olympiadbench.jsonl", "question", "final_answer"),
        **{name: (f"{name}.jsonl", "problem", "answer")
           for name in ("aime24_figures", "aime24_nofigures", "aime25_nofigures", "openaimath")},
    }.items()),
    Task("gpqa_diamond", gpqa_docs, gpqa_prompt, lambda doc, ev: doc["letter"], grade_gpqa),
    *(Task(name, code_docs, lambda problem, ev: problem_prompt(problem), lambda problem, ev: problem.id, grade_code)
      for name in CODE_TASKS),
):
    EVAL_TASKS.add(_task.name, _task)

TASKS = EVAL_TASKS   # the registry under its old name

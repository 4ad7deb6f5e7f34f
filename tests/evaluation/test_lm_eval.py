"""The papers' benchmarks through real lm-evaluation-harness runs on a tiny model, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, evaluator_for
from reasoning_sft.training.models import build_tiny_model


# What a model trained in the s1 format writes: its thinking, the answer marker, then the answer.
S1_ANSWER = "<|im_start|>think\nLet me work it out.\n<|im_start|>answer\nAnswer: "


def _always_answers(model, tokenizer, text: str, either: tuple[str, str] | None = None):
    """Steer the real model (a forward hook on its output layer) to write `text` then end its turn.
    With `either=(a, b)`, token a of the text is raised together with token b: sampling picks one."""
    forced = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    forced = [[t] for t in forced]
    if either:
        a, b = (tokenizer.convert_tokens_to_ids(x) for x in either)
        forced[max(i for i, t in enumerate(forced) if t == [a])].append(b)
    step = {"n": 0}

    def restart(module, inputs):
        if inputs[0].shape[1] > 1:     # the embeddings see the whole prompt: a new generation starts
            step["n"] = 0

    def steer(module, inputs, output):
        out = output.clone()
        for token in forced[min(step["n"], len(forced) - 1)]:
            out[:, -1, token] += 1e4
        step["n"] += 1
        return out
    handles = [model.get_input_embeddings().register_forward_pre_hook(restart),
               model.lm_head.register_forward_hook(steer)]

    class Handles:
        def remove(self):
            for h in handles:
                h.remove()
    return Handles()


@pytest.mark.slow
def test_lm_eval_accuracy_matches_our_recount(make_cfg, tiny_tokenizer, shared_data, tmp_path):
    model = build_tiny_model(tiny_tokenizer).eval()
    cfg = make_cfg(["eval=benchmarks", "eval.tasks=[amc23,aime24,math500]", "eval.limit=3",
                    "eval.max_new_tokens=64", f"eval.data_dir={shared_data}"])
    handle = _always_answers(model, tiny_tokenizer, S1_ANSWER + "So the answer is $\\boxed{27}$.")
    try:
        results = evaluator_for(cfg, model, tiny_tokenizer).run(tmp_path)
    finally:
        handle.remove()
    rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
    assert [r["correct"] for r in rows if r["task"] == "amc23"] == [True, False, False]   # gold "27.0"
    assert not any(r["correct"] for r in rows if r["task"] != "amc23")
    for task, summary in results.items():
        assert summary["num_problems"] == 3
        assert summary["accuracy"] == summary["lm_eval"]["exact_match,none"]      # lm-eval agrees
        assert summary["lm_eval_agreement"] == "equal"
    for r in rows:                                                                 # and each verdict
        assert r["extracted"] == "27" and r["generation"].endswith("\\boxed{27}$.")
        assert r["thinking_style"] == "s1" and r["grading"] in ("exact", "not_equal", "verified")
        # eval.prompt=trained: the question alone, as the model was trained (no added instruction)
        assert r["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n") and "step by step" not in r["prompt"]


@pytest.mark.slow
def test_evaluate_stage_on_every_bundled_task(tmp_path, tiny_tokenizer, shared_data):
    import subprocess
    import sys

    from conftest import ROOT
    model = build_tiny_model(tiny_tokenizer)
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={tmp_path}/model", "eval=benchmarks",
         "eval.tasks=[aime24,aime25,amc23,math500,olympiadbench]", "eval.limit=2", "eval.max_new_tokens=8",
         "eval.budget_forcing.enabled=true", "eval.budget_forcing.max_thinking_tokens=6",
         "eval.budget_forcing.max_answer_tokens=4", f"eval.data_dir={shared_data}", "logger=none",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["eval"]) == {"aime24", "aime25", "amc23", "math500", "olympiadbench"}
    rows = [json.loads(line) for line in open(tmp_path / "run" / "eval_samples.jsonl")]
    assert len(rows) == 10
    for r in rows:    # budget forcing ran inside lm-eval: thinking capped at 6 tokens, s1's end forced
        assert r["thinking_tokens"] <= 6
        assert ("<|im_start|>answer\nFinal Answer:" if r["capped"] else "<|im_start|>answer") in r["generation"]


@pytest.mark.slow
def test_sampled_metrics_through_lm_eval(make_cfg, tiny_tokenizer, shared_data, tmp_path):
    from math import comb

    model = build_tiny_model(tiny_tokenizer).eval()
    cfg = make_cfg(["eval=benchmarks", "eval.tasks=[amc23]", "eval.limit=2", "eval.max_new_tokens=64",
                    "eval.samples_per_problem=8", "eval.temperature=1.0", "eval.ks=[1,4,8]", f"eval.data_dir={shared_data}"])
    handle = _always_answers(model, tiny_tokenizer, S1_ANSWER + "So the answer is $\\boxed{27}$.",
                            either=("7", "8"))
    try:
        first = evaluator_for(cfg, model, tiny_tokenizer).run(tmp_path)["amc23"]
        rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
        again = evaluator_for(cfg, model, tiny_tokenizer).run(tmp_path)["amc23"]
    finally:
        handle.remove()
    assert first == again and [json.loads(x)["generation"] for x in open(tmp_path / "eval_samples.jsonl")] == \
        [r["generation"] for r in rows]                                  # seeded: the same samples again
    doc0 = [r for r in rows if r["id"] == 0]
    assert len(doc0) == 8 and {r["extracted"] for r in doc0} == {"27", "28"}   # really sampled
    c = sum(r["correct"] for r in doc0)                                 # gold 27.0; doc 1 (gold 36) never
    assert first["accuracy"] == pytest.approx(c / 8 / 2) == pytest.approx(first["lm_eval"]["exact_match,none"])
    assert first["pass@4"] == pytest.approx((1 - comb(8 - c, 4) / comb(8, 4)) / 2)
    assert first["pass@8"] == 0.5 and first["samples_per_problem"] == 8
    assert first["maj@8"] in (0.0, 0.5)


def _gpqa_file(tmp_path):
    """A file in the official GPQA CSV layout, with made-up questions (GPQA itself is never bundled)."""
    import csv
    path = tmp_path / "gpqa_diamond.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                    "Incorrect Answer 3"])
        for i in range(6):
            w.writerow([f"r{i}", f"Which value does test question {i} expect?", f"right {i}", f"wrong {i}a",
                        f"wrong {i}b", f"wrong {i}c"])
    return path


@pytest.mark.slow
def test_gpqa_shuffles_choices_by_seed_and_grades_letters(make_cfg, tiny_tokenizer, tmp_path):
    import re

    path = _gpqa_file(tmp_path)
    model = build_tiny_model(tiny_tokenizer).eval()
    cfg = make_cfg(["eval=benchmarks", "eval.tasks=[gpqa_diamond]", f"eval.gpqa_path={path}", "eval.max_new_tokens=48"])
    handle = _always_answers(model, tiny_tokenizer, S1_ANSWER + "The answer is \\\\boxed{B}.")
    try:
        result = evaluator_for(cfg, model, tiny_tokenizer).run(tmp_path)["gpqa_diamond"]
        rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
        other_seed = make_cfg(["eval=benchmarks", "eval.tasks=[gpqa_diamond]", f"eval.gpqa_path={path}",
                               "eval.max_new_tokens=48", "seed=7"])
        evaluator_for(other_seed, model, tiny_tokenizer).run(tmp_path)
        reseeded = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
    finally:
        handle.remove()
    gold_letters = []
    for r in rows:   # find the correct choice's letter in the rendered prompt itself
        (letter,) = re.findall(r"\(([ABCD])\) right \d", r["prompt"])
        gold_letters.append(letter)
        assert r["gold"] == letter and r["extracted"] == "B" and r["correct"] == (letter == "B")
        assert sorted(re.findall(r"\(([ABCD])\) ", r["prompt"])) == ["A", "B", "C", "D"]
    assert len(set(gold_letters)) > 1                                    # really shuffled
    assert [r["gold"] for r in reseeded] != gold_letters                 # by the seed
    assert result["accuracy"] == gold_letters.count("B") / 6 == result["lm_eval"]["exact_match,none"]


def test_gpqa_needs_the_users_copy(make_cfg, tiny_tokenizer):
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluation.tasks import TASKS
    with pytest.raises(ConfigError, match="eval.gpqa_path=None: GPQA-Diamond is read only from your own copy"):
        TASKS["gpqa_diamond"].docs(evaluator_for(make_cfg(["eval=benchmarks"])))


@pytest.mark.slow
def test_a_new_benchmark_is_one_registry_entry_loaded_once_and_each_response_graded_once(make_cfg, tiny_tokenizer,
                                                                                          tmp_path):
    """tasks.py's promise: a registered Task and a data file make a benchmark lm-eval runs; the evaluation
    reads its problems once (the check before the model loads and the run share them), and lm-eval's
    score and the per-sample rows come from one grading of each response."""
    from reasoning_sft.data.loaders import read_rows
    from reasoning_sft.evaluation.tasks import Task
    from reasoning_sft.registry import EVAL_TASKS
    (tmp_path / "doubles.jsonl").write_text("".join(json.dumps({"q": f"What is {i} + {i}?", "a": str(2 * i)}) + "\n"
                                                    for i in range(3)))
    graded, loaded = [], []

    def docs(ev):
        loaded.append(ev.config.data_dir)
        return [row for _, row in read_rows(str(tmp_path / "doubles.jsonl"))]

    def grade(generation, doc, ev):
        graded.append(doc["a"])
        return ev.grader.math(generation, doc["a"], doc["q"])
    EVAL_TASKS.add("doubles", Task("doubles", docs, lambda doc, ev: doc["q"], lambda doc, ev: doc["a"], grade))
    model = build_tiny_model(tiny_tokenizer).eval()
    handle = _always_answers(model, tiny_tokenizer, S1_ANSWER + "So the answer is $\\boxed{2}$.")
    try:
        evaluator = evaluator_for(make_cfg(["eval=benchmarks", "eval.tasks=[doubles]", "eval.max_new_tokens=64"]))
        evaluator.check()                                   # what a stage does before loading the model
        from reasoning_sft.evaluation.generation import HFEngine
        results = evaluator.attach(HFEngine(model, tiny_tokenizer)).run(tmp_path)
    finally:
        handle.remove()
        EVAL_TASKS.remove("doubles")
    rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
    assert [(r["gold"], r["correct"]) for r in rows] == [("0", False), ("2", True), ("4", False)]
    assert rows[1]["prompt"].endswith("What is 1 + 1?<|im_end|>\n<|im_start|>assistant\n")
    assert results["doubles"]["accuracy"] == pytest.approx(1 / 3) and results["doubles"]["lm_eval_agreement"] == "equal"
    assert sorted(graded) == ["0", "2", "4"]        # once per response
    assert len(loaded) == 1                         # the problems were read once


def test_vllm_backend_without_vllm_is_a_clear_error(make_cfg, tmp_path, monkeypatch):
    from reasoning_sft.config import validate_train_config
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluate import run_evaluation
    monkeypatch.setitem(sys.modules, "vllm", None)     # a machine without vLLM: `import vllm` fails
    cfg = make_cfg(["eval=synthetic", "eval.backend=vllm", f"model_path={tmp_path}"], config_name="evaluate")
    with pytest.raises(ConfigError, match=r"eval.backend='vllm': vLLM is not installed here \(make install-vllm: "
                                          r"the CUDA build on a GPU machine, the CPU build elsewhere\)"):
        run_evaluation(cfg)
    with pytest.raises(ConfigError, match=r"eval.backend='tgi': not a known generation backend \(known: hf, vllm\)"):
        run_evaluation(make_cfg(["eval=synthetic", "eval.backend=tgi", f"model_path={tmp_path}"],
                                config_name="evaluate"))
    with pytest.raises(ConfigError, match="eval.backend='vllm': after training the trainer still holds the GPUs"):
        validate_train_config(make_cfg(["eval=synthetic", "eval.backend=vllm"]))


def test_generation_goes_through_an_engines_own_primitive(make_cfg, tiny_tokenizer):
    """The backend seam vLLM plugs into (engines.Engine): an object with `generate_ids` receives every
    generation call (plain and budget-forced) as token ids, and its ids come back as the outputs."""

    class RecordingEngine:   # stands in for vLLM's engine at the seam only; the loop under test is ours
        tokenizer, batches_itself, hf_model = tiny_tokenizer, True, None

        def __init__(self):
            self.calls, self.seeds = [], []

        def generate_ids(self, contexts, max_new_tokens, stop_strings=None, sampling=None, seeds=None,
                         keep_cache=False):
            self.calls.append((len(contexts), max_new_tokens, stop_strings))
            self.seeds.append(seeds)
            reply = tiny_tokenizer("so 42", add_special_tokens=False)["input_ids"]
            return [(reply, True) for _ in contexts]

    engine = RecordingEngine()
    plain = evaluator_for(make_cfg(["eval=synthetic", "eval.max_new_tokens=9"])).attach(engine).generate(["a", "b"])
    assert [o["generation"] for o in plain] == ["so 42", "so 42"] and engine.calls == [(2, 9, None)]
    assert len(set(engine.seeds[0])) == 2   # each prompt's sample its own seed (decoding.sample_seed)
    engine.calls.clear()
    forced = evaluator_for(make_cfg(
        ["eval=synthetic", "eval.budget_forcing.enabled=true", "eval.budget_forcing.num_wait=1",
         "eval.budget_forcing.max_thinking_tokens=50"])).attach(engine).generate(["a"])
    # thinking ended early -> one Wait and a second thinking call -> then the answer phase
    assert forced[0]["waits"] == 1 and len(engine.calls) == 3
    assert engine.calls[0][2] == ["<|im_start|>"] and engine.calls[2][2] is None


@pytest.mark.parametrize("overrides,message", [
    (["eval.tasks=[no_such_task]"], "eval.tasks: 'no_such_task' is not a task"),
    (["eval.tasks=[aime24]", "eval.data_dir=/nowhere"],
     "eval.tasks: aime24: /nowhere/aime24.jsonl does not exist and its hub set could not be read"),
    (["eval.tasks=[gpqa_diamond]"], "eval.gpqa_path=None"),
    (["eval.tasks=[aime24]", "eval.prompt=mine"], "eval.prompt='mine'"),
])
def test_bad_eval_tasks_are_refused_before_training(make_cfg, shared_data, overrides, message):
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.train import run_training
    cfg = make_cfg(["eval=benchmarks", "eval.after_train=true", f"eval.data_dir={shared_data}", *overrides])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_training(cfg)
    assert not (cfg.paths.output_dir and __import__("pathlib").Path(cfg.paths.output_dir, "data_card.json").exists())


@pytest.mark.slow
def test_an_lm_eval_builtin_the_docs_name_runs_or_fails_in_one_line_offline():
    """Issue 30: `eval.tasks=[ifeval]` has its packages installed (make install) and, with no hub, is
    refused before any model loads in one line naming the dataset, never a traceback."""
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.evaluate", "eval.tasks=[ifeval]"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("config error: eval.tasks: lm-eval's 'ifeval' could not load its dataset"), last
    assert "google/IFEval" in last and "HF_DATASETS_OFFLINE=1" in last


def test_a_benchmark_not_found_locally_comes_from_the_papers_hub_set_or_says_how_to_get_it(make_cfg, tmp_path):
    """No local copy (a fresh clone) -> the hub dataset SkyThought's task files load; offline and not
    cached -> one error naming that dataset, its split and filter, the released file, and both ways to
    get it offline (the datasets cache, or a local jsonl with the named fields)."""
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluation.tasks import TASKS, source_of
    cfg = make_cfg(["eval=benchmarks", f"eval.data_dir={tmp_path}"])
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    ev = evaluator_for(cfg)
    with pytest.raises(ConfigError) as err:
        TASKS["amc23"].docs(ev)
    message = str(err.value)
    for part in (f"{tmp_path}/amc23.jsonl does not exist", "OfflineModeIsEnabled",
                 "AI-MO/aimo-validation-amc, split train, rows whose url holds '2023'",
                 "SkyThought skythought/evals/tasks/amc23/amc23.yaml",
                 "datasets.load_dataset('AI-MO/aimo-validation-amc', None, split='train')",
                 "fields 'problem' and 'answer' to DIR/amc23.jsonl and set eval.data_dir=DIR"):
        assert part in message, message
    assert source_of(TASKS["amc23"], str(tmp_path)).startswith("hub: AI-MO/aimo-validation-amc")
    (tmp_path / "amc23.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    assert TASKS["amc23"].docs(ev) == [{"problem": "1+1?", "answer": "2"}]       # a local copy wins
    assert source_of(TASKS["amc23"], str(tmp_path)) == str(tmp_path / "amc23.jsonl")


def test_hub_sets_are_read_through_datasets_with_configs_filter_and_field_names(tmp_path):
    """The loader on a dataset repo laid out as the hub's (a README declaring two configs): both
    configs concatenated, rows filtered, the source's fields renamed to the task's."""
    import dataclasses

    from reasoning_sft.evaluation.tasks import HUB_SETS, load_hub_set
    repo = tmp_path / "AIME2025"
    repo.mkdir()
    (repo / "one.jsonl").write_text('{"question": "Q1", "answer": "1", "url": "2025-I"}\n'
                                    '{"question": "Q2", "answer": "2", "url": "2024-I"}\n')
    (repo / "two.jsonl").write_text('{"question": "Q3", "answer": "3", "url": "2025-II"}\n')
    (repo / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: test\n    path: {f}\n"
        for c, f in (("AIME2025-I", "one.jsonl"), ("AIME2025-II", "two.jsonl"))) + "---\n")
    hub = dataclasses.replace(HUB_SETS["aime25"], path=str(repo), keep=("url", "2025"))
    rows = load_hub_set(hub, "problem", "answer")
    assert [(r["problem"], r["answer"]) for r in rows] == [("Q1", "1"), ("Q3", "3")]

"""Each paper's evaluation as its released code runs it (issue 36): the prompts verbatim, decoding that
is eval's alone, GPQA read by each paper's rules, s1's budget rows, Long1K's context, and the experiments
and sweeps that set them. The released strings are pinned by their sha256 where the text is long."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import torch

from conftest import evaluator_for
from reasoning_sft.training.models import build_tiny_model

VENDOR_GENERATION = {"repetition_penalty": 1.05, "top_k": 20, "top_p": 0.8, "temperature": 0.7, "do_sample": True}


def test_the_sky_t1_paper_prompt_is_the_harness_prompt_type_verbatim():
    from reasoning_sft.evaluation.prompts import SKYT1_PAPER_SYSTEM_PROMPT, eval_prompt
    # sha256 of the system turn of utils.py's "Sky-T1" template (SkyThought corrupt @9a750c7, lines 148-173)
    assert hashlib.sha256(SKYT1_PAPER_SYSTEM_PROMPT.encode()).hexdigest() == \
        "7487b599a02fb6be689c19dec29c8fbb4933031de76dfe1fb546f2ef69a720d8"
    assert "separated with '\n\n' <|end_of_thought|>" in SKYT1_PAPER_SYSTEM_PROMPT and "{" not in SKYT1_PAPER_SYSTEM_PROMPT
    assert eval_prompt("skyt1_paper", None) == (SKYT1_PAPER_SYSTEM_PROMPT, "{question}")


def test_hf_decoding_never_inherits_the_checkpoints_generation_config(tiny_tokenizer, tmp_path):
    """A saved model whose generation_config.json holds Qwen2.5-Instruct's five sampling keys generates,
    greedy with eval's defaults, exactly what it does without them; left to transformers it would not."""
    from reasoning_sft.data.formatting import render_prompt
    from reasoning_sft.data.synthetic import generate_records
    from reasoning_sft.evaluation.generation import HFEngine
    from reasoning_sft.training.models import load_saved_model
    model = build_tiny_model(tiny_tokenizer, seed=0).eval()
    with torch.no_grad():   # varied text (the default init repeats one token)
        for p in model.parameters():
            p.mul_(10) if p.dim() == 2 else None
    plain, vendor = tmp_path / "plain", tmp_path / "vendor"
    for d in (plain, vendor):
        model.save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
    config = json.loads((vendor / "generation_config.json").read_text())
    (vendor / "generation_config.json").write_text(json.dumps({**config, **VENDOR_GENERATION}))
    prompts = [render_prompt(r.question, tiny_tokenizer) for r in generate_records(16, seed=0, split="test")]
    contexts = tiny_tokenizer(prompts, add_special_tokens=False)["input_ids"]
    with_keys = load_saved_model(vendor, "model_path")[0].eval()
    without = HFEngine(load_saved_model(plain, "model_path")[0].eval(), tiny_tokenizer).generate_ids(contexts, 60)
    assert HFEngine(with_keys, tiny_tokenizer).generate_ids(contexts, 60) == without
    assert with_keys.generation_config.repetition_penalty == 1.05          # put back after each call
    left = [with_keys.generate(torch.tensor([c]), max_new_tokens=60, do_sample=False,
                               pad_token_id=tiny_tokenizer.pad_token_id)[0, len(c):].tolist() for c in contexts]
    assert sum(a[:len(b)] != b[:len(a)] for a, (b, _) in zip(left, without)) >= 8   # the keys would matter


def test_decoding_settings_are_eval_keys_recorded_in_every_summary_and_row(make_cfg, tiny_tokenizer, tmp_path):
    cfg = make_cfg(["eval=synthetic", "eval.num_problems=3", "eval.max_new_tokens=8", "eval.repetition_penalty=1.3",
                    "eval.top_k=5", "eval.temperature=0.7", "eval.seed=3", "eval.min_tokens=2"])
    result = evaluator_for(cfg, build_tiny_model(tiny_tokenizer).eval(), tiny_tokenizer).run(tmp_path)["synthetic"]
    assert result["decoding"] == {"temperature": 0.7, "top_p": 1.0, "top_k": 5, "repetition_penalty": 1.3,
                                  "min_tokens": 2, "seed": 3, "max_new_tokens": 8, "backend": "hf", "dtype": "float32"}
    rows = [json.loads(line) for line in open(tmp_path / "eval_samples.jsonl")]
    assert all(r["decoding"] == result["decoding"] and r["generated_tokens"] >= 2 for r in rows)
    assert result["prompt"] == "trained" and result["grading_profile"] == "strict"


def _gpqa_csv(path, n=8):
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"])
        for i in range(n):
            w.writerow([f"Which value is {i}? ", f"right {i} ", f"wrong {i}a", f"wrong {i}b", f"wrong {i}c"])
    return path


def test_gpqa_under_s1s_rules(make_cfg, tmp_path, chat_endpoint):
    """s1's gpqa/openai/utils.py: choices [incorrect 1-3, correct] shuffled by lm-eval's seeded `random`
    (random_seed 0) document after document, not stripped; its reading: boxed (a space too) or `Answer:`,
    a lower-case letter upper-cased, else its judge (EXTRACTION_TEMPLATE, verbatim), else "A"."""
    from reasoning_sft.evaluation.profiles import S1_GPQA_EXTRACTION_TEMPLATE, grade_letter_s1
    path = _gpqa_csv(tmp_path / "gpqa.csv")
    ev = evaluator_for(make_cfg(["eval=benchmarks", "eval.tasks=[gpqa_diamond]", f"eval.gpqa_path={path}",
                                 "eval.prompt=s1", "eval.grading.profile=s1"]))
    docs = ev.problems("gpqa_diamond")
    rng = random.Random(0)
    for i, doc in enumerate(docs):
        expected = [f"wrong {i}a", f"wrong {i}b", f"wrong {i}c", f"right {i} "]
        rng.shuffle(expected)
        assert doc["choices"] == expected and doc["letter"] == "ABCD"[expected.index(f"right {i} ")]
    assert ev.tasks["gpqa_diamond"].prompt(docs[0], ev) == "Which value is 0? \n\n" + "\n".join(
        f"{letter}) {c}" for letter, c in zip("ABCD", docs[0]["choices"]))
    section = "<|im_start|>think\nhmm\n<|im_start|>answer\n"
    read = lambda text, gold: (lambda g: (g.correct, g.extracted, g.outcome))(grade_letter_s1(section + text, gold, "q", None))  # noqa: E731
    assert read("Answer: \\boxed{c}", "C") == (True, "C", "letter")
    assert read("so \\boxed b$", "B") == (True, "B", "letter")
    assert grade_letter_s1(section + "Answer: d", "D", "q", None).extracted == "D"
    unread = grade_letter_s1(section + "I cannot tell.", "A", "q", None)
    assert (unread.correct, unread.extracted, unread.outcome) == (True, "A", "default_a")   # s1's quarter credit
    assert hashlib.sha256(S1_GPQA_EXTRACTION_TEMPLATE.encode()).hexdigest() == \
        "77e32e64c079e649b99645270d814ce5016ceb00014e470ae587a4db4bb8a61c"   # gpqa/openai/utils.py's, verbatim
    url = chat_endpoint(lambda prompt, model: "B")
    from reasoning_sft.evaluation.profiles import Judge
    from reasoning_sft.schema import JudgeConfig
    judged = grade_letter_s1(section + "the second one", "B", "Q?\nAnswer Choices:\n(A) x", Judge(JudgeConfig(url, "gpt-4o-mini")))
    assert (judged.correct, judged.outcome) == (True, "judged")
    asked = chat_endpoint.requests[0]
    assert asked["messages"][-1]["content"] == S1_GPQA_EXTRACTION_TEMPLATE % {
        "expression1": "Q?\nAnswer Choices:\n(A) x", "expression2": "the second one"}
    assert (asked["temperature"], asked["max_tokens"]) == (0.5, 1024)


def test_the_grade_stage_reads_gpqa_letters_by_profile(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    path = tmp_path / "gpqa.jsonl"
    rows = [{"response": "<|im_start|>answer\nAnswer: \\boxed{c}", "gold": "C"},
            {"response": "<|im_start|>answer\nno idea", "gold": "A"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def grade(profile):
        run = tmp_path / profile
        proc = subprocess.run([sys.executable, "-m", "reasoning_sft.grade", f"input={path}", "task=gpqa",
                               "fields.response=response", f"profile={profile}", f"hydra.run.dir={run}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [json.loads(line)["correct"] for line in open(run / "graded.jsonl")]
    assert grade("s1") == [True, True]            # lower-case boxed letter; the unreadable one defaults to A
    assert grade("strict") == [False, False]      # ours: a lower-case `c` is no letter, no default


def test_long1k_gpqa_judge_prompt_is_its_own(chat_endpoint):
    from reasoning_sft.evaluation.profiles import LONG1K_GPQA_JUDGE_PROMPT, LONG1K_JUDGE_PROMPT, Judge, grade_letter_long1k
    from reasoning_sft.schema import JudgeConfig
    assert LONG1K_GPQA_JUDGE_PROMPT.startswith("现在我会向你输入一段涉及数学计算的科学问题，问题的标准答案")
    assert LONG1K_GPQA_JUDGE_PROMPT.replace("一段涉及数学计算的科学问题", "一段数学问题") == LONG1K_JUDGE_PROMPT
    url = chat_endpoint(lambda prompt, model: "因此最终得[[1]]分。")
    v = grade_letter_long1k("a\nb\nThe answer is (B).", "B", "Which?", Judge(JudgeConfig(url, "qwen")), "wrong")
    assert v.correct and v.outcome == "judged"
    assert "问题是:Which?\n标准答案是:B\n模型输出是:abThe answer is (B).\n" in chat_endpoint.requests[0]["messages"][1]["content"]


def test_s1_auto_thinking_budget_is_its_formula(tiny_tokenizer):
    """vllm_causallms.py:262-265: max_gen_toks - the longest prompt - `<|im_start|>think` - the forced
    `<|im_start|>answer\\nFinal Answer:` - 100."""
    from reasoning_sft.data.styles import get_style
    from reasoning_sft.evaluation.budget_forcing import thinking_cap
    from reasoning_sft.schema import BudgetForcingConfig
    prompts = ["<|im_start|>user\nshort<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\na longer question, with more words in it<|im_end|>\n<|im_start|>assistant\n"]
    n = lambda t: len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"])   # noqa: E731
    expected = 2000 - n(prompts[1]) - n("<|im_start|>think\n") - n("<|im_start|>answer\nFinal Answer:") - 100
    assert thinking_cap(tiny_tokenizer, prompts, get_style("s1"), BudgetForcingConfig(max_thinking_tokens="auto"), 2000) \
        == expected
    assert thinking_cap(tiny_tokenizer, prompts, get_style("s1"), BudgetForcingConfig(max_thinking_tokens=None), 2000) == 2000


def test_olympiadbench_gold_is_its_first_final_answer(make_cfg, tmp_path):
    """SkyThought and the Qwen2.5-Math harness grade against `final_answer[0]` (a list: the bundled copy
    holds one per problem; a problem with several keeps the first)."""
    (tmp_path / "olympiadbench.jsonl").write_text(json.dumps({"question": "Solve.", "final_answer": ["$2$", "$3$"]}) + "\n")
    ev = evaluator_for(make_cfg(["eval=benchmarks", "eval.tasks=[olympiadbench]", f"eval.data_dir={tmp_path}"]))
    (doc,) = ev.problems("olympiadbench")
    assert ev.tasks["olympiadbench"].target(doc, ev) == "2"


def test_a_budget_past_the_models_context_is_one_line_before_any_run_dir(make_cfg, tmp_path):
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluate import run_evaluation
    cfg = make_cfg(["eval=synthetic", "eval.max_new_tokens=5000", f"hydra.run.dir={tmp_path}/run"], config_name="evaluate")
    with pytest.raises(ConfigError, match=r"eval.max_new_tokens=5000: more than the model's context of 4096 tokens "
                                          r"\(model.network.max_position_embeddings\)"):
        run_evaluation(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,expected", [
    (["experiment=skyt1_paper_tables"], {"eval.prompt": "skyt1_paper", "eval.grading.profile": "qwen_math",
                                         "eval.seed": 0, "eval.temperature": 0.0, "eval.max_new_tokens": 32768,
                                         "eval.tasks": ["aime24", "amc23", "math500", "olympiadbench"]}),
    (["experiment=skyt1_qwen32b"], {"eval.prompt": "skyt1", "eval.grading.profile": "skythought"}),
    (["experiment=long1k_qwen32b"], {"eval.vllm.max_model_len": 40960, "eval.max_new_tokens": 35768}),
    (["experiment=s1k_qwen32b"], {"eval.tasks": ["aime24_figures", "aime24_nofigures", "openaimath", "gpqa_diamond"],
                                  "eval.vllm.dtype": "float32", "eval.budget_forcing.enabled": False}),
    (["experiment=s1_1"], {"eval.budget_forcing.max_thinking_tokens": "auto", "eval.budget_forcing.enabled": True,
                           "eval.tasks": ["aime25_nofigures", "aime24_nofigures", "openaimath", "gpqa_diamond"]}),
])
def test_each_experiment_evaluates_as_its_paper(make_cfg, overrides, expected):
    from omegaconf import OmegaConf

    from reasoning_sft.config import parse_groups
    cfg = make_cfg(overrides + ["data.source.path=/data/traces.jsonl"])
    parse_groups(cfg)   # every eval value typed and in range
    for key, value in expected.items():
        got = OmegaConf.select(cfg, key)
        assert (OmegaConf.to_container(got) if OmegaConf.is_config(got) else got) == value, key

"""Chat rendering in every thinking style and assistant-only labels."""

from __future__ import annotations

import pytest

from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.data.formatting import (IGNORE_INDEX, THINKING_STYLES, assistant_text, render_prompt,
                                      tokenize_records)


@pytest.mark.parametrize("style", sorted(THINKING_STYLES))
def test_loss_is_on_exactly_the_assistant_turn(tiny_tokenizer, style):
    recs = generate_records(20, seed=3)
    examples, counts = tokenize_records(recs, tiny_tokenizer, THINKING_STYLES[style], 1024)
    assert counts["kept"] == 20
    for rec, ex in zip(recs, examples):
        supervised = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
        masked = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab == IGNORE_INDEX]
        # The supervised span decodes to the assistant turn and its end-of-turn token, nothing else.
        assert tiny_tokenizer.decode(supervised) == assistant_text(rec, THINKING_STYLES[style]) + "<|im_end|>"
        assert tiny_tokenizer.decode(masked) == render_prompt(rec.question, tiny_tokenizer)
        # Labels are the inputs themselves (the model shifts them); one contiguous supervised suffix.
        first = next(i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX)
        assert ex["labels"][first:] == ex["input_ids"][first:]
        assert all(lab == IGNORE_INDEX for lab in ex["labels"][:first])


def test_styles_render_the_papers_markers(tiny_tokenizer):
    rec = generate_records(1, seed=0)[0]
    s1 = assistant_text(rec, THINKING_STYLES["s1"])
    assert s1.startswith("<|im_start|>think\n") and "\n<|im_start|>answer\nAnswer: " in s1
    r1 = assistant_text(rec, THINKING_STYLES["r1"])
    assert r1.startswith("<think>\n") and "\n</think>\n\n" in r1
    sky = assistant_text(rec, THINKING_STYLES["skyt1"])
    assert sky.startswith("<|begin_of_thought|>") and sky.endswith("<|end_of_solution|>")
    assert "<|end_of_thought|>\n\n<|begin_of_solution|>" in sky
    # Markers are single tokens of the tiny vocabulary, as in the papers' models.
    for marker in ["<think>", "</think>", "<|begin_of_thought|>", "<|end_of_solution|>", "<|im_start|>"]:
        assert len(tiny_tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1


def test_tiny_tokenizer_splits_digits_and_round_trips(tiny_tokenizer):
    ids = tiny_tokenizer("Step 1: 134 + 49 = 183.", add_special_tokens=False)["input_ids"]
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert all(len(t.lstrip("Ġ")) <= 1 for t in tokens if any(c.isdigit() for c in t))
    text = "Ünïcödé ∑ x² — 日本 \\boxed{\\frac{1}{2}}"
    assert tiny_tokenizer.decode(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_overflow_drop_and_truncate_are_counted(tiny_tokenizer):
    recs = generate_records(50, seed=1)
    full, _ = tokenize_records(recs, tiny_tokenizer, THINKING_STYLES["s1"], 4096)
    lengths = sorted(len(e["input_ids"]) for e in full)
    limit = lengths[25]
    longer = sum(n > limit for n in lengths)
    assert longer > 0
    kept, counts = tokenize_records(recs, tiny_tokenizer, THINKING_STYLES["s1"], limit, "drop")
    assert counts["dropped_too_long"] == longer and len(kept) == 50 - longer
    cut, counts = tokenize_records(recs, tiny_tokenizer, THINKING_STYLES["s1"], limit, "truncate")
    assert counts["truncated"] == longer and len(cut) == 50
    assert max(len(e["input_ids"]) for e in cut) == limit
    # A limit inside the prompt leaves nothing to learn: dropped, and counted as such.
    _, counts = tokenize_records(recs, tiny_tokenizer, THINKING_STYLES["s1"], 16, "truncate")
    assert counts["dropped_prompt_too_long"] == 50


def test_a_saved_run_model_reloads_the_exact_tokenizer(tiny_tokenizer, tmp_path):
    """A run dir's final_model holds config.json (model_type qwen2) next to the tokenizer: it must not
    come back as Qwen2Tokenizer with Qwen's own pre-tokenizer (" 1" would become "Ġ", "1")."""
    from reasoning_sft.training.models import build_tiny_model, load_pretrained_tokenizer
    build_tiny_model(tiny_tokenizer).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    reloaded = load_pretrained_tokenizer(str(tmp_path))
    recs = generate_records(50, seed=4)
    text = [render_prompt(r.question, tiny_tokenizer) + assistant_text(r, THINKING_STYLES["s1"]) for r in recs]
    assert [reloaded(t, add_special_tokens=False)["input_ids"] for t in text] == \
        [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in text]
    assert reloaded.chat_template == tiny_tokenizer.chat_template and reloaded.eos_token == "<|im_end|>"


def test_skyt1_system_prompt_is_kept_in_training(tmp_path, tiny_tokenizer):
    """A ShareGPT row of the Sky-T1 release carries its system prompt: the model trains with it."""
    import json

    from reasoning_sft.data.loaders import load_sharegpt
    from reasoning_sft.data.formatting import THINKING_STYLES, tokenize_records, training_system_prompt
    from reasoning_sft.evaluation.prompts import SKYT1_SYSTEM_PROMPT
    path = tmp_path / "sky.jsonl"
    path.write_text(json.dumps({"system": SKYT1_SYSTEM_PROMPT, "conversations": [
        {"from": "user", "value": "What is 2 + 3?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\n2 + 3 = 5.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\n\\boxed{5}\n\n<|end_of_solution|>"}]}) + "\n")
    records = load_sharegpt(str(path))
    assert training_system_prompt(records, None) == SKYT1_SYSTEM_PROMPT
    assert training_system_prompt(records, "Be brief.") == "Be brief."           # the config wins
    (example,), _ = tokenize_records(records, tiny_tokenizer, THINKING_STYLES["skyt1"], 4096)
    prompt_ids = [t for t, label in zip(example["input_ids"], example["labels"]) if label == -100]
    assert tiny_tokenizer.decode(prompt_ids).startswith("<|im_start|>system\n" + SKYT1_SYSTEM_PROMPT + "<|im_end|>")


@pytest.mark.parametrize("name,system,user", [
    ("trained", "You train me.", "What is 2 + 3?"),
    ("s1", None, "What is 2 + 3?"),
    ("skyt1", "SKYT1", "Return your final response within \\boxed{}. What is 2 + 3?"),
    ("qwen_math", None, "What is 2 + 3?\n\nPlease reason step by step, and put your final answer within \\boxed{}."),
])
def test_evaluation_prompts_are_the_papers(make_cfg, name, system, user):
    from reasoning_sft.evaluation.prompts import SKYT1_SYSTEM_PROMPT, eval_prompt
    got_system, template = eval_prompt(name, "You train me.")
    assert got_system == (SKYT1_SYSTEM_PROMPT if system == "SKYT1" else system)
    assert template.format(question="What is 2 + 3?") == user


def test_unknown_evaluation_prompt_is_a_config_error(make_cfg):
    """The registry's one line, from the schema's check (before any run dir) and from the registry itself."""
    from reasoning_sft.config import validate_eval_config
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.evaluation.prompts import eval_prompt
    line = (r"^eval.prompt='mine': not a known evaluation prompt \(known: trained, s1, skyt1, qwen_math, deepseek_qwen, "
            r"skyt1_paper\)$")
    with pytest.raises(ConfigError, match=line):
        validate_eval_config(make_cfg(["eval=synthetic", "eval.prompt=mine"], config_name="evaluate"))
    with pytest.raises(ConfigError, match=line):
        eval_prompt("mine", None)


def test_s1_text_is_the_released_tokenization_on_real_s1k_rows(shared_data, tiny_tokenizer):
    """s1's data/tokenization.py:22-33 on the 5 bundled s1K rows: the trajectory joined and stripped,
    `Answer: ` added only where the attempt lacks "Answer:" (all 5 hold "Final Answer:"), the answer
    stripped; our chat text equals the released one character for character."""
    import json

    from reasoning_sft.data.formatting import render_chat
    from reasoning_sft.data.loaders import load_s1k
    rows = [json.loads(line) for line in open(shared_data / "s1k_sample.jsonl")]
    recs = load_s1k(str(shared_data / "s1k_sample.jsonl"), trajectory_field="gemini_thinking_trajectory",
                    attempt_field="gemini_attempt")
    for row, rec in zip(rows, recs):
        answer = row["gemini_attempt"]
        answer = "Answer: " + answer if "Answer:" not in answer else answer
        released = tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": row["question"]},
             {"role": "assistant", "content": "<|im_start|>think\n" + "\n".join([row["gemini_thinking_trajectory"]]).strip()
              + "\n<|im_start|>answer\n" + answer.strip()}], tokenize=False)
        prompt, completion = render_chat(rec, tiny_tokenizer, THINKING_STYLES["s1"])
        assert released.startswith(prompt + completion)
        assert "Answer: Final Answer:" not in completion and "Final Answer:" in completion
    rec = recs[0]   # an attempt without "Answer:" gets the prefix
    bare = assistant_text(type(rec)(**{**rec.__dict__, "answer": " 42\n"}), THINKING_STYLES["s1"])
    assert bare.endswith("\n<|im_start|>answer\nAnswer: 42")

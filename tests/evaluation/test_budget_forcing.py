"""Budget forcing on a real tiny Qwen2 model with the HF generate backend."""

from __future__ import annotations

import pytest
import torch

from reasoning_sft.schema import BudgetForcingConfig
from reasoning_sft.evaluation.budget_forcing import forced_text, generate_with_budget
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.data.formatting import THINKING_STYLES, render_prompt
from reasoning_sft.evaluation.generation import HFEngine
from reasoning_sft.training.models import build_tiny_model


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer, seed=0).eval()


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    return [render_prompt(r.question, tiny_tokenizer) for r in generate_records(6, seed=0, split="test")]


def _stops_at_once(model, tokenizer, marker: str):
    """Make the real model end its thinking at every step: a forward hook on its output layer
    raises the logit of the style's stop marker (a model that "stops early")."""
    stop_id = tokenizer.convert_tokens_to_ids(marker)

    def hook(module, inputs, output):
        output = output.clone()
        output[..., stop_id] += 1e4
        return output
    return model.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("style", ["s1", "r1", "skyt1"])
def test_cap_never_exceeds_the_budget_and_forces_the_delimiter(model, tiny_tokenizer, prompts, style):
    st = THINKING_STYLES[style]
    suppress = tiny_tokenizer.convert_tokens_to_ids(st.think_stop)
    handle = model.lm_head.register_forward_hook(   # never stop on its own: the cap must act
        lambda m, i, out: out.index_fill(-1, torch.tensor([suppress, tiny_tokenizer.eos_token_id]), -1e4))
    try:
        outs = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts, st, BudgetForcingConfig(max_thinking_tokens=24,
                                    max_answer_tokens=8), default_max_thinking=512, batch_size=4)
    finally:
        handle.remove()
    for o in outs:
        assert o.thinking_tokens == 24 and o.capped and o.waits == 0
        assert o.text.startswith(st.think_start)
        thinking, rest = o.text[len(st.think_start):].split(st.think_stop, 1)   # the answer phase starts
        assert len(tiny_tokenizer(thinking.rstrip("\n"), add_special_tokens=False)["input_ids"]) <= 24
        assert (st.think_stop + rest).startswith(forced_text(st, thinking, capped=True).lstrip("\n"))
        assert rest.startswith("answer\nFinal Answer:" if style == "s1" else "") and o.answer_tokens <= 8


@pytest.mark.parametrize("style", ["s1", "r1", "skyt1"])
def test_extend_appends_exactly_num_wait_waits(model, tiny_tokenizer, prompts, style):
    st = THINKING_STYLES[style]
    handle = _stops_at_once(model, tiny_tokenizer, st.think_stop)
    try:
        outs = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts, st,
                                    BudgetForcingConfig(max_thinking_tokens=100, num_wait=2, max_answer_tokens=4),
                                    default_max_thinking=512, batch_size=4)
        floor = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts[:2], st,
                                     BudgetForcingConfig(max_thinking_tokens=100, min_thinking_tokens=9,
                                                   wait_string=" Hmm", max_answer_tokens=4),
                                     default_max_thinking=512, batch_size=2)
    finally:
        handle.remove()
    wait = len(tiny_tokenizer("Wait", add_special_tokens=False)["input_ids"])
    for o in outs:   # s1's min_tokens=1 with Waits: every thinking phase writes a token before it may stop
        thinking = o.text[len(st.think_start):].split(st.think_stop, 1)[0]
        assert o.waits == 2 and thinking.count("Wait") == 2 and o.thinking_tokens == 3 + 2 * wait
        assert not o.capped
    hmm = len(tiny_tokenizer(" Hmm", add_special_tokens=False)["input_ids"])
    for o in floor:   # extended until min_thinking_tokens, one " Hmm" at a time
        assert o.thinking_tokens >= 9 and o.waits == -(-9 // hmm)


def test_forcing_off_is_plain_generate(make_cfg, model, tiny_tokenizer, prompts):
    from conftest import evaluator_for
    cfg = make_cfg(["eval=synthetic", "eval.max_new_tokens=20", "eval.batch_size=3"])
    assert not cfg.eval.budget_forcing.enabled
    ours = [o["generation"] for o in evaluator_for(cfg, model, tiny_tokenizer).generate(prompts)]
    for prompt, text in zip(prompts, ours):
        ids = tiny_tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        plain = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id,
                               eos_token_id=tiny_tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
        if tiny_tokenizer.eos_token_id in plain:
            plain = plain[: plain.index(tiny_tokenizer.eos_token_id)]
        assert text == tiny_tokenizer.decode(plain, skip_special_tokens=False)


# The exact ids forced after the thinking, for the tiny tokenizer (special tokens: 1 <|im_start|>,
# 439 </think>, 441 <|end_of_thought|>, 442 <|begin_of_solution|>; 201 is a newline).
PINNED = {
    ("s1", False): ("<|im_start|>answer", [1, 402]),                         # s1's `thinking_end`
    ("s1", True): ("<|im_start|>answer\nFinal Answer:", [1, 402, 201, 394, 67, 78, 223, 401, 28]),
    ("r1", False): ("</think>", [439]),
    ("r1", True): ("</think>", [439]),
    ("skyt1", False): ("<|end_of_thought|>\n\n<|begin_of_solution|>", [441, 201, 201, 442]),
    ("skyt1", True): ("\n<|end_of_thought|>\n\n<|begin_of_solution|>", [201, 441, 201, 201, 442]),
}


@pytest.mark.parametrize("style,capped", sorted(PINNED))
def test_forced_text_and_ids_are_pinned(tiny_tokenizer, style, capped):
    st = THINKING_STYLES[style]
    text, ids = PINNED[(style, capped)]
    thinking = "So the total is 226.\n"          # as a model writes it: the separator before the stop
    assert forced_text(st, thinking, capped) == text
    assert tiny_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # Cut mid-line, the separator the model never wrote is added once: never doubled.
    sep = st.think_end.split(st.think_stop)[0]
    assert forced_text(st, "So the total is 226.", capped) == (sep + text.lstrip("\n") if capped else text)
    assert not text.endswith((" ", "\n"))            # no dangling whitespace token


@pytest.mark.parametrize("style", ["s1", "r1", "skyt1"])
def test_thinking_that_ends_on_its_own_continues_exactly_as_training_rendered_it(tiny_tokenizer, style):
    """The ids of a trained trace up to its stop marker, plus the forced ids, are the training
    sequence's own ids: no doubled newline, no space token the model never saw."""
    from reasoning_sft.data.formatting import render_chat
    st = THINKING_STYLES[style]
    for rec in generate_records(5, seed=1, split="test"):
        _, completion = render_chat(rec, tiny_tokenizer, st)
        train_ids = tiny_tokenizer(completion, add_special_tokens=False)["input_ids"]
        start = len(tiny_tokenizer(st.think_start, add_special_tokens=False)["input_ids"])
        stop = train_ids.index(tiny_tokenizer.convert_tokens_to_ids(st.think_stop), start)
        thinking = tiny_tokenizer.decode(train_ids[start:stop])
        forced = tiny_tokenizer(forced_text(st, thinking, capped=False), add_special_tokens=False)["input_ids"]
        assert train_ids[stop:stop + len(forced)] == forced


@pytest.mark.parametrize("style", ["s1", "r1", "skyt1"])
def test_generation_forces_the_pinned_ids(model, tiny_tokenizer, prompts, style):
    st = THINKING_STYLES[style]
    handle = _stops_at_once(model, tiny_tokenizer, st.think_stop)    # ends its thinking on its own
    try:
        natural = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts[:2], st,
                                       BudgetForcingConfig(max_thinking_tokens=50, max_answer_tokens=2), 512, 2)
    finally:
        handle.remove()
    suppress = tiny_tokenizer.convert_tokens_to_ids(st.think_stop)
    handle = model.lm_head.register_forward_hook(   # never stops: the cap acts
        lambda m, i, out: out.index_fill(-1, torch.tensor([suppress, tiny_tokenizer.eos_token_id]), -1e4))
    try:
        cut = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts[:2], st,
                                   BudgetForcingConfig(max_thinking_tokens=8, max_answer_tokens=2), 512, 2)
    finally:
        handle.remove()
    for o in natural:
        assert not o.capped and o.forced_ids == PINNED[(style, False)][1]
    for o in cut:   # the cap's forced text after exactly the 8 thinking tokens the model wrote
        thinking = tiny_tokenizer.decode(tiny_tokenizer(o.text[len(st.think_start):],
                                                        add_special_tokens=False)["input_ids"][:8])
        assert o.capped and tiny_tokenizer.decode(o.forced_ids) == forced_text(st, thinking, True)


def test_the_answer_phase_gets_the_generation_budget_by_default_as_s1s_fork(model, tiny_tokenizer, prompts):
    """s1's vllm_causallms.py:413 runs the answer phase with the full max_tokens again; ours does with
    max_answer_tokens=None, and a number caps it."""
    st = THINKING_STYLES["s1"]
    never = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(st.think_stop), tiny_tokenizer.eos_token_id])
    handle = model.lm_head.register_forward_hook(lambda m, i, out: out.index_fill(-1, never, -1e4))
    try:
        full = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts[:2], st, BudgetForcingConfig(max_thinking_tokens=6),
                                    default_max_thinking=20, batch_size=2)
        capped = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts[:2], st,
                                      BudgetForcingConfig(max_thinking_tokens=6, max_answer_tokens=3),
                                      default_max_thinking=20, batch_size=2)
    finally:
        handle.remove()
    assert [o.answer_tokens for o in full] == [20, 20] and [o.answer_tokens for o in capped] == [3, 3]


@pytest.mark.parametrize("style", ["s1", "r1", "skyt1"])
def test_later_phases_continue_the_kept_kv_cache_with_the_same_tokens(model, tiny_tokenizer, prompts, style):
    """HF keeps the thinking phase's KV cache for the next phase (Waits, the answer): the answer phase's
    first forward reads only what is new (the forced end of thinking), not prompt + thinking again, and
    every generation is the one re-reading gives, capped, extended and ending on its own, greedy and
    sampled (seeds per row)."""
    st = THINKING_STYLES[style]
    stop = tiny_tokenizer.convert_tokens_to_ids(st.think_stop)
    calls = []
    # the model ends its thinking at random-looking steps: a bias on the stop marker for some contexts
    bias = model.lm_head.register_forward_hook(
        lambda m, i, out: out.index_add(-1, torch.tensor([stop]), (i[0].sum(-1, keepdim=True) % 7 < 1) * 30.0))
    record = model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs["input_ids"].shape[1]),
                                             with_kwargs=True)
    seen = []
    try:
        for bf, sampling in [(BudgetForcingConfig(max_thinking_tokens=30, max_answer_tokens=6), None),
                             (BudgetForcingConfig(max_thinking_tokens=40, num_wait=2, max_answer_tokens=6), None),
                             (BudgetForcingConfig(max_thinking_tokens=30, num_wait=1, max_answer_tokens=6),
                              {"temperature": 1.0, "top_p": 0.9, "top_k": None, "repetition_penalty": 1.0,
                               "min_tokens": 0})]:
            seeds = list(range(100, 100 + len(prompts))) if sampling else None
            calls.clear()
            kept = generate_with_budget(HFEngine(model, tiny_tokenizer), prompts, st, bf, 512, 3, sampling, seeds=seeds)
            reuse_reads = sum(calls)
            calls.clear()
            fresh = generate_with_budget(HFEngine(model, tiny_tokenizer, reuse_cache=False), prompts, st, bf, 512, 3,
                                         sampling, seeds=seeds)
            assert [o.text for o in kept] == [o.text for o in fresh]
            assert [(o.thinking_tokens, o.waits, o.capped) for o in kept] == \
                   [(o.thinking_tokens, o.waits, o.capped) for o in fresh]
            assert reuse_reads < sum(calls)   # fewer positions read: prompt and thinking not again
            seen += kept
        assert any(o.capped for o in seen) and any(o.waits for o in seen) and any(not o.capped for o in seen)
    finally:
        bias.remove()
        record.remove()


def test_a_context_that_extends_no_kept_row_is_read_whole(model, tiny_tokenizer, prompts):
    """The kept cache is used only when every context of the next call extends one of its rows; other
    contexts are generated from scratch, as a fresh engine generates them."""
    contexts = [tiny_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[:3]]
    engine = HFEngine(model, tiny_tokenizer)
    first = engine.generate_ids(contexts, 5, keep_cache=True)
    unrelated = [c[:-2] + [7, 8] for c in contexts]
    assert engine.generate_ids(unrelated, 5) == HFEngine(model, tiny_tokenizer).generate_ids(unrelated, 5)
    again = engine.generate_ids(contexts, 5, keep_cache=True)   # the same contexts: the last token fed again
    assert again == first
    assert engine.generate_ids([c + ids for c, (ids, _) in zip(contexts, first)], 4) == \
        HFEngine(model, tiny_tokenizer).generate_ids([c + ids for c, (ids, _) in zip(contexts, first)], 4)

"""Ablation properties on the real R1 traces in ../shared/data (and the synthetic ones)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
from hydra.utils import instantiate

from reasoning_sft.ablation import (NUMBER, Context, ParagraphSplitter, apply_transforms, combine,
                                    digit_corruption, keyword_removal, short_cot, step_delete,
                                    step_insert, step_shuffle, summarize, wrong_answers)
from reasoning_sft.config import ConfigError, validate_prepare_config
from reasoning_sft.data.loaders import load_r1
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.grading import last_boxed


@pytest.fixture(scope="module")
def traces(shared_data):
    return load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"))


def ctx(seed=0):
    return Context(random.Random(seed))


def _within_sampling_error(observed: int, n: int, p: float) -> bool:
    return abs(observed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.7, 1.0])
def test_digit_corruption_rate_holds_and_answer_survives(traces, rate):
    out = digit_corruption(traces, ctx(), rate)
    numbers = sum(len(NUMBER.findall(r.thinking)) for r in traces)
    replaced = sum(r.metadata["ablation"][-1]["replaced"] for r in out)
    assert _within_sampling_error(replaced, numbers, rate)
    for before, after in zip(traces, out):
        assert after.answer == before.answer and last_boxed(after.answer) == last_boxed(before.answer)
        assert after.question == before.question and after.id == before.id
        # same layout: only digits change, each replaced number keeps its digit count
        assert len(after.thinking) == len(before.thinking)
        assert [len(m) for m in NUMBER.findall(after.thinking)] == [len(m) for m in NUMBER.findall(before.thinking)]
    card = summarize(out)["digit_corruption"]
    assert abs(card["replaced_share"] - rate) < 0.02


def test_digit_corruption_is_deterministic_and_can_corrupt_the_answer(traces):
    a, b = digit_corruption(traces[:20], ctx(3), 0.5), digit_corruption(traces[:20], ctx(3), 0.5)
    assert [r.thinking for r in a] == [r.thinking for r in b]
    assert [r.thinking for r in a] != [r.thinking for r in digit_corruption(traces[:20], ctx(4), 0.5)]
    bad = digit_corruption(traces[:20], ctx(), 1.0, corrupt_answer=True)
    assert all(last_boxed(x.answer) != last_boxed(y.answer) for x, y in zip(bad, traces[:20]))


def test_keyword_removal_removes_whole_words_readably(traces):
    out = keyword_removal(traces, ctx(), 1.0, ["wait", "hmm", "alternatively", "let me double-check"])
    removed = sum(r.metadata["ablation"][-1]["removed"] for r in out)
    assert removed > 100
    for r in out:
        lowered = r.thinking.lower()
        assert "hmm" not in lowered.replace("hmmm", "")
        assert not any(w in lowered.split() for w in ["wait,", "wait", "alternatively,"])
    rec = generate_records(1, seed=0)[0]
    rec.thinking = "Wait, so the total is 5. But hmm, let me double-check: 5. Awaited but-not."
    (cleaned,) = keyword_removal([rec], ctx(), 1.0)
    # phrases go with their comma or colon; a sentence start is re-capitalised; "Awaited" stays
    assert cleaned.thinking == "So the total is 5. 5. Awaited -not."
    assert cleaned.metadata["ablation"][-1]["removed"] == 5


def test_keyword_removal_rate_is_over_samples(traces):
    out = keyword_removal(traces, ctx(), 0.5)
    selected = sum(r.metadata["ablation"][-1]["selected"] for r in out)
    assert _within_sampling_error(selected, len(traces), 0.5)
    assert summarize(out)["keyword_removal"]["selected_share"] == round(selected / len(traces), 4)


@pytest.mark.parametrize("rate", [0.33, 0.67, 1.0])
def test_step_shuffle_keeps_the_multiset_of_steps(traces, rate):
    split = ParagraphSplitter(200)
    out = step_shuffle(traces, ctx(), rate, split)
    for before, after in zip(traces, out):
        steps, sep = split(before.thinking)
        change = after.metadata["ablation"][-1]
        order = change.get("order", list(range(len(steps))))
        assert sorted(order) == list(range(len(steps)))                 # a permutation: same multiset
        assert after.thinking == sep.join(steps[i] for i in order)
        assert Counter(after.thinking) == Counter(sep.join(steps))      # not a character lost
        k = int(round(rate * len(steps)))
        if k >= 2:
            assert sum(i != j for i, j in enumerate(order)) == k         # exactly the chosen share moved
        assert after.answer == before.answer


@pytest.mark.parametrize("rate", [0.33, 0.67, 1.0])
def test_step_delete_keeps_order_and_removes_the_share(traces, rate):
    split = ParagraphSplitter(200)
    out = step_delete(traces, ctx(), rate, split)
    for before, after in zip(traces, out):
        steps, sep = split(before.thinking)
        change = after.metadata["ablation"][-1]
        gone = set(change["deleted_steps"])
        assert change["deleted"] == len(gone) == min(int(round(rate * len(steps))), len(steps) - 1)
        assert after.thinking == sep.join(s for i, s in enumerate(steps) if i not in gone)   # order kept
        assert after.thinking.strip()                                   # never empty, even at 1.0
        assert change["capped"] == (int(round(rate * len(steps))) > len(steps) - 1)


def test_step_insert_adds_steps_from_other_records(traces):
    split = ParagraphSplitter(200)
    out = step_insert(traces[:50], ctx(), 0.67, split)
    own_steps = [set(split(r.thinking)[0]) for r in traces[:50]]
    for i, after in enumerate(out):
        a = split(after.thinking)[0]
        inserted = after.metadata["ablation"][-1]["inserted"]
        assert inserted == int(round(0.67 * len(own_steps[i])))
        assert len(after.thinking) > len(traces[i].thinking) or inserted == 0
        assert sum(s not in own_steps[i] for s in a) >= 1 or inserted == 0


def test_wrong_answers_swap_perturb_and_filter(traces):
    swapped = wrong_answers(traces, ctx(), "swap")
    assert Counter(r.answer for r in swapped) == Counter(r.answer for r in traces)   # a permutation
    assert all(r.metadata["ablation"][-1]["donor"] != r.id for r in swapped)
    changed = sum(r.answer != t.answer for r, t in zip(swapped, traces))
    assert changed >= 0.9 * len(traces)
    perturbed = wrong_answers(traces, ctx(), "perturb")
    assert sum(last_boxed(p.answer) != last_boxed(t.answer) for p, t in zip(perturbed, traces)) >= 0.9 * len(traces)
    marked = generate_records(10, seed=0)
    for i, r in enumerate(marked):
        r.metadata["correct"] = i % 3 == 0
    assert len(wrong_answers(marked, ctx(), "filter_incorrect")) == 6
    with pytest.raises(ValueError, match="metadata\\['correct'\\]"):
        wrong_answers(traces, ctx(), "filter_incorrect")


def test_combine_makes_long_traces_and_keeps_the_count(traces):
    out = combine(traces[:40], ctx(), k=2, mix_ratio=0.5)
    assert len(out) == 40
    combined = [r for r in out if r.source == "combined"]
    assert len(combined) == 20
    for r in combined:
        assert r.question.startswith("Solve the following 2 problems.") and "Problem 2:" in r.question
        assert len(r.metadata["parts"]) == 2 and "second problem" in r.thinking
    by_target = combine(traces[:40], ctx(), k=2, target_tokens=8000, mix_ratio=1.0)
    assert all(r.metadata["ablation"][-1]["tokens"] >= 8000 or len(r.metadata["parts"]) == 6 for r in by_target)


def test_short_cot_uses_the_reference_solution(shared_data):
    recs = generate_records(5, seed=0)
    for r in recs[:3]:
        r.metadata["solution"] = f"Add them: {r.metadata['gold_answer']}."
    with pytest.raises(ValueError, match="no metadata\\['solution'\\]"):
        short_cot(recs, ctx())
    out = short_cot(recs, ctx(), on_missing="skip")
    assert len(out) == 3 and out[0].thinking.startswith("Add them")


@pytest.mark.parametrize("name,rate", [("digit_corruption", 0.7), ("keyword_removal", 1.0),
                                       ("step_shuffle", 1.0), ("step_delete", 0.33), ("step_insert", 0.67)])
def test_ablation_configs_compose_apply_and_never_empty_a_trace(make_cfg, traces, name, rate):
    cfg = make_cfg([f"ablation={name}", f"ablation.rate={rate}"])
    validate_prepare_config(cfg)
    transforms = [instantiate(t) for t in cfg.ablation.transforms]
    out, stages = apply_transforms(traces, transforms, seed=1)
    assert stages == [{"transform": name, "records_in": 291, "records_out": 291}]
    assert all(r.thinking.strip() for r in out)
    again, _ = apply_transforms(traces, [instantiate(t) for t in cfg.ablation.transforms], seed=1)
    assert [r.thinking for r in again] == [r.thinking for r in out]


@pytest.mark.parametrize("override", ["ablation.rate=1.5", "ablation.rate=-0.2"])
def test_rate_outside_unit_interval_is_a_config_error(make_cfg, override):
    cfg = make_cfg(["ablation=digit_corruption", override])
    with pytest.raises(ConfigError, match=r"^ablation\.rate="):
        validate_prepare_config(cfg)


def test_unknown_transform_is_a_config_error(make_cfg):
    cfg = make_cfg(["ablation=digit_corruption", "ablation.transforms.0._target_=reasoning_sft.ablation.nope"])
    with pytest.raises(ConfigError, match=r"ablation\.transforms\[0\]\._target_"):
        validate_prepare_config(cfg)


def test_llm_splitter_speaks_the_openai_protocol_and_refuses_rewrites(traces, chat_endpoint):
    from reasoning_sft.ablation import LLMSplitter

    rewrite = {"on": False}

    def reply(prompt, model):
        steps = [p for p in prompt.split("\n\n", 1)[1].split("\n\n") if p.strip()]
        if rewrite["on"]:
            steps[0] = "A different first step."
        return "Steps:\n" + json.dumps(steps)

    splitter = LLMSplitter(base_url=chat_endpoint(reply), model="llama-3.3-70b")
    steps, sep = splitter(traces[0].thinking)
    assert sep.join(steps).split() == traces[0].thinking.split() and len(steps) > 5
    assert chat_endpoint.requests[0]["path"] == "/v1/chat/completions"
    assert chat_endpoint.requests[0]["model"] == "llama-3.3-70b"
    out = step_delete(traces[:2], ctx(), 0.5, splitter)
    assert out[0].metadata["ablation"][-1]["deleted"] == int(round(0.5 * len(steps)))
    rewrite["on"] = True
    with pytest.raises(ValueError, match="do not reproduce the trace"):
        splitter(traces[0].thinking)


def test_llm_splitter_is_a_config_choice(make_cfg):
    cfg = make_cfg(["ablation=step_delete", "ablation/splitter=llm", "ablation.splitter.base_url=http://127.0.0.1:9/v1",
                    "ablation.splitter.model=llama-3.3-70b"])
    validate_prepare_config(cfg)
    (fn,) = [instantiate(t) for t in cfg.ablation.transforms]
    assert type(fn.keywords["splitter"]).__name__ == "LLMSplitter"
    with pytest.raises(ConfigError, match=r"ablation\.splitter\.base_url: a required value is missing"):
        validate_prepare_config(make_cfg(["ablation=step_delete", "ablation/splitter=llm"]))

"""Ablation properties on the real R1 traces in ../shared/data (and the synthetic ones)."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import replace

import pytest
from hydra.utils import instantiate

from reasoning_sft.data.ablations import (LINKING, NUMBER, REFLECTION_KEYWORDS, Context, DigitCorruption, ParagraphSplitter,
                                          apply_transforms, combine,
                                    digit_corruption, keyword_removal, short_cot, step_delete,
                                    step_insert, step_shuffle, summarize, wrong_answers)
from reasoning_sft.config import validate_prepare_config
from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.data.loaders import load_r1
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.data.answers import last_boxed
from reasoning_sft.data.records import Record


@pytest.fixture(scope="module")
def traces(shared_data):
    return load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"))


def ctx(seed=0):
    return Context(random.Random(seed))


def _within_sampling_error(observed: int, n: int, p: float) -> bool:
    return abs(observed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1


def _numbers(rec) -> list[str]:
    return NUMBER.findall(rec.thinking) + NUMBER.findall(rec.answer)


def test_digit_corruption_at_rate_one_is_skythoughts_script(traces):
    """Every number of the whole response, thinking and solution, becomes an integer 0-10."""
    out = digit_corruption(traces, ctx(), 1.0)
    for before, after in zip(traces, out):
        assert all(n.isdigit() and 0 <= int(n) <= 10 for n in _numbers(after))
        assert len(_numbers(after)) == len(_numbers(before))
        assert after.question == before.question and after.id == before.id
    card = summarize(out)["digit_corruption"]
    assert card["numbers_found"] == sum(len(_numbers(r)) for r in traces) == card["numbers_replaced"]
    assert card["replaced_share"] == 1.0 and 0.8 < card["changed_share"] < 1.0   # randint may redraw the same
    assert 0 < card["text_changed_share"] < 0.2 and card["chars_changed"] > card["numbers_changed"]
    # the solutions' boxed answers are numbers too: most of them change
    assert sum(last_boxed(x.answer) != last_boxed(y.answer) for x, y in zip(out, traces)) > 0.8 * len(traces)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.7])
def test_digit_corruption_replaces_the_rate_of_numbers(traces, rate):
    out = digit_corruption(traces, ctx(), rate)
    found = sum(len(_numbers(r)) for r in traces)
    replaced = sum(r.metadata["ablation"][-1]["replaced"] for r in out)
    assert _within_sampling_error(replaced, found, rate)
    card = summarize(out)["digit_corruption"]
    assert abs(card["replaced_share"] - rate) < 0.02 and card["samples_changed"] <= card["samples"] == len(traces)
    # a number left alone is exactly where it was: the text around the numbers never changes
    for before, after in zip(traces, out):
        assert NUMBER.split(after.thinking) == NUMBER.split(before.thinking)


def test_digit_corruption_variants_thinking_only_and_digit_count(traces):
    kept = digit_corruption(traces[:30], ctx(), 1.0, scope="thinking", keep_digit_count=True)
    for before, after in zip(traces[:30], kept):
        assert after.answer == before.answer
        assert [len(m) for m in NUMBER.findall(after.thinking)] == [len(m) for m in NUMBER.findall(before.thinking)]
        assert len(after.thinking) == len(before.thinking)
    a, b = digit_corruption(traces[:20], ctx(3), 0.5), digit_corruption(traces[:20], ctx(3), 0.5)
    assert [r.thinking for r in a] == [r.thinking for r in b]
    assert [r.thinking for r in a] != [r.thinking for r in digit_corruption(traces[:20], ctx(4), 0.5)]
    with pytest.raises(ConfigError, match="ablation.scope='solution'"):   # the plugin checks it when built
        DigitCorruption(0.5, scope="solution")


def _blemishes(text: str) -> tuple:
    return (text.count("  "), text.count(" ,"), text.count(",,"), text.count(" ."),
            len(re.findall(r"(?m)^[ \t]*[,.;:]", text)), len(re.findall(r"\n{3,}", text)))


def test_keyword_removal_at_rate_one_leaves_no_reflection_keyword(traces, shared_data):
    s1k = [json.loads(line) for line in open(shared_data / "s1k_sample.jsonl")]
    gemini = [Record(id=str(i), question=r["question"], thinking=r["gemini_thinking_trajectory"], answer="a")
              for i, r in enumerate(s1k)]
    for pool in (traces, gemini):
        out = keyword_removal(pool, ctx(), 1.0)
        pattern = re.compile(r"\b(wait|hmm|alternatively|double-check|verify|let me check|let's check)\b", re.I)
        for before, after in zip(pool, out):
            assert not pattern.search(after.thinking)
            change = after.metadata["ablation"][-1]
            if change["found"] == 0:
                assert after.thinking == before.thinking            # byte-identical
            # readable: no doubled spaces, orphan commas or empty lines created
            assert all(x <= y for x, y in zip(_blemishes(after.thinking), _blemishes(before.thinking)))
    card = summarize(keyword_removal(traces, ctx(), 1.0))["keyword_removal"]
    assert card["keywords_removed"] == card["keywords_found"] > 8000 and card["removed_share"] == 1.0
    assert "but" not in REFLECTION_KEYWORDS


def test_keyword_removal_reads_well():
    cases = {"Wait, so x is 5.": "So x is 5.",
             "So, wait, the answer is 5.": "So, the answer is 5.",
             "But wait, that is wrong.": "But that is wrong.",
             "That is 5, hmm. So x.": "That is 5. So x.",
             "Hmm... Wait, no.": "No.",
             "x = 3.\n\nWait.\n\nThen y.": "x = 3.\n\nThen y.",
             "I think so. Hmm, let me double-check: 2+2=4.": "I think so. 2+2=4.",
             "Awaited but-not.": "Awaited but-not.",
             "but wait-- actually no": "but actually no"}
    for text, expected in cases.items():
        (out,) = keyword_removal([Record("a", "q", text, "ans")], ctx(), 1.0)
        assert out.thinking == expected


def test_keyword_removal_rate_is_over_keyword_occurrences(traces):
    out = keyword_removal(traces, ctx(), 0.5)
    found = sum(r.metadata["ablation"][-1]["found"] for r in out)
    removed = sum(r.metadata["ablation"][-1]["removed"] for r in out)
    assert _within_sampling_error(removed, found, 0.5)


@pytest.mark.parametrize("rate", [0.33, 0.67, 1.0])
def test_step_shuffle_keeps_the_multiset_of_steps(traces, rate):
    split = ParagraphSplitter(200)
    out = step_shuffle(traces, ctx(), rate, split)
    for before, after in zip(traces, out):
        steps, sep, _ = split(before.thinking)
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
        steps, sep, _ = split(before.thinking)
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


def _graded_pool(traces, wrong_every=3):
    """The real traces, every third answer made wrong, graded as prepare grades them."""
    from reasoning_sft.data.correctness import grade_records
    pool = [replace(r, answer=r.answer.replace(f"\\boxed{{{last_boxed(r.answer)}}}", "\\boxed{1000}"))
            if i % wrong_every == 0 else r for i, r in enumerate(traces)]
    return grade_records(pool)


def test_wrong_answers_natural_draws_the_pools_graded_wrong_responses(traces):
    pool, counts = _graded_pool(traces)
    assert counts["graded_wrong"] == sum(1 for i in range(len(traces)) if i % 3 == 0)
    correct = [r for r in pool if r.metadata["correct"]]
    base = correct[:50]
    out = wrong_answers(base, Context(random.Random(0), pool=pool), "natural")
    assert len(out) == 50 and all(r.metadata["correct"] is False for r in out)
    assert all(last_boxed(r.answer) == "1000" for r in out) and len({r.id for r in out}) == 50
    more = wrong_answers(correct, Context(random.Random(0), pool=pool), "natural")   # 194 wanted, 97 exist
    assert len(more) == counts["graded_wrong"]
    card = summarize(more)["wrong_answers"]
    assert card["wanted"] == len(correct) and card["shortfall"] == len(correct) - counts["graded_wrong"]
    with pytest.raises(ValueError, match="none of the 290 graded responses is wrong"):
        wrong_answers(traces, Context(random.Random(0), pool=_graded_pool(traces, 10 ** 6)[0][1:]), "natural")
    assert len(wrong_answers(pool, ctx(), "filter_incorrect")) == counts["graded_wrong"]


def test_wrong_answers_variants_swap_and_perturb(traces):
    swapped = wrong_answers(traces, ctx(), "swap")
    assert Counter(r.answer for r in swapped) == Counter(r.answer for r in traces)   # a permutation
    assert all(r.metadata["ablation"][-1]["donor"] != r.id for r in swapped)
    changed = sum(r.answer != t.answer for r, t in zip(swapped, traces))
    assert changed >= 0.9 * len(traces)
    perturbed = wrong_answers(traces, ctx(), "perturb")
    assert sum(last_boxed(p.answer) != last_boxed(t.answer) for p, t in zip(perturbed, traces)) >= 0.9 * len(traces)
    with pytest.raises(ValueError, match="metadata\\['correct'\\]"):
        wrong_answers(traces, ctx(), "filter_incorrect")


def test_combine_pairs_each_source_problem_at_most_once(traces):
    out = combine(traces, ctx(), k=2, num_samples=100)
    assert len(out) == 100
    parts = [p for r in out for p in r.metadata["parts"]]
    assert len(parts) == 200 and len(set(parts)) == 200            # no source problem used twice
    by_id = {t.id: t for t in traces}
    for r in out:
        first, second = (by_id[p] for p in r.metadata["parts"])
        assert any(r.question.startswith(h.format(n=2)) for h in LINKING["question_header"])
        assert first.question in r.question and second.question in r.question
        assert first.thinking in r.thinking and second.thinking in r.thinking
        assert r.thinking.index(first.thinking) < r.thinking.index("second problem") < r.thinking.index(second.thinking)
        assert first.answer in r.answer and second.answer in r.answer
    # different linking words (Long1K's README), each wording used, the same dataset on every run
    for key in ("question_header", "thinking_next"):
        used = {next(v for v in LINKING[key] if v.format(n=2, ordinal="second") in r.question + r.thinking)
                for r in out}
        assert used == set(LINKING[key])
    assert [r.thinking for r in combine(traces, ctx(), k=2, num_samples=100)] == [r.thinking for r in out]
    assert len(combine(traces, ctx(), k=2)) == len(traces) // 2    # null num_samples: all pairs the pool makes
    with pytest.raises(ValueError, match="need 300 distinct source problems; the pool holds 291"):
        combine(traces, ctx(), k=2, num_samples=150)


def test_combine_mixes_long_samples_as_a_share(traces):
    count = lambda text: len(text.split())   # noqa: E731
    long_pool = traces[200:]
    out = combine(traces[:200], Context(random.Random(0), count), k=2, num_samples=60, long_share=0.25,
                  long_source=long_pool, long_min_tokens=1000)
    assert len(out) == 60
    longs = [r for r in out if r.metadata["ablation"][-1].get("long_mix")]
    assert len(longs) == 15 and all(count(r.thinking) >= 1000 and r.id in {t.id for t in long_pool} for r in longs)
    assert summarize(out)["combine"]["parts"] == {1: 15, 2: 45}


@pytest.mark.parametrize("target", [1000, 1500, 2000, 3000, 6000, 12000])
def test_combine_reaches_every_level_of_the_length_law(traces, target):
    count = lambda text: len(text.split())   # noqa: E731  (words: the R1 traces run 300-9,000 of them)
    out = combine(traces, Context(random.Random(0), count), num_samples=20, target_tokens=target)
    assert len(out) == 20
    lengths = [count(r.thinking) for r in out]
    assert all(0.75 * target <= n <= 1.25 * target + 40 for n in lengths)   # + the linking words
    used = [p for r in out for p in r.metadata.get("parts", [r.id])]
    assert len(used) == len(set(used))


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
    cfg = make_cfg(["ablation=digit_corruption", "ablation.transforms.0._target_=reasoning_sft.data.ablations.nope"])
    with pytest.raises(ConfigError, match=r"ablation\.transforms\[0\]\._target_"):
        validate_prepare_config(cfg)


def _paraphrase(step: str, i: int) -> str:
    """What a chat model does to a step it was asked to copy: drops a word, rewrites another, trims."""
    words = step.split()
    if len(words) > 6:
        words[1] = words[1].upper() + "s"
        del words[3]
    return (" ".join(words[:-1]) if i % 4 == 3 else " ".join(words)).strip()


def test_llm_splitter_aligns_a_paraphrasing_model_and_caches(traces, chat_endpoint, tmp_path):
    from reasoning_sft.data.ablations import LLMSplitter

    mode = {"reply": "paraphrase"}

    def reply(prompt, model):
        trace = prompt.split("\n\n", 1)[1]
        paragraphs = [p for p in trace.split("\n\n") if p.strip()]
        if mode["reply"] == "junk":
            return "I cannot split this."
        if mode["reply"] == "other":
            return json.dumps(["An unrelated text about cooking pasta.", "Boil water, add salt."])
        return "Steps:\n" + json.dumps([_paraphrase(p, i) for i, p in enumerate(paragraphs)])

    splitter = LLMSplitter(base_url=chat_endpoint(reply), model="llama-3.3-70b", cache_dir=str(tmp_path / "cache"))
    text = traces[0].thinking
    steps, sep, how = splitter(text)
    assert how == "llm" and len(steps) > 5
    assert "".join("".join(steps).split()) == "".join(text.split())   # the trace's own text, nothing rewritten
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    assert sum(s in paragraphs for s in steps) >= 0.9 * len(steps)   # cut where the model's steps begin
    assert chat_endpoint.requests[0]["path"] == "/v1/chat/completions"
    assert chat_endpoint.requests[0]["model"] == "llama-3.3-70b"
    # a 3-rate sweep over two traces asks the model once per trace
    for rate in (0.33, 0.67, 1.0):
        out = step_delete(traces[:2], ctx(), rate, splitter)
    assert len(chat_endpoint.requests) == 2
    assert summarize(out)["step_delete"]["splitter"] == {"llm_cached": 2}
    # unusable replies fall back to paragraphs for that trace, counted; or fail with fallback=raise
    for bad in ("junk", "other"):
        mode["reply"] = bad
        fresh = LLMSplitter(base_url=splitter.base_url, model="llama-3.3-70b")
        out = step_shuffle(traces[2:4], ctx(), 0.67, fresh)
        assert summarize(out)["step_shuffle"]["splitter"] == {"paragraph_fallback": 2}
        with pytest.raises(ValueError, match="LLMSplitter"):
            LLMSplitter(base_url=splitter.base_url, model="m", fallback="raise")(traces[2].thinking)
    with pytest.raises(OSError):   # an endpoint that is down is an error, never a silent fallback
        LLMSplitter(base_url="http://127.0.0.1:9/v1", model="m", timeout_seconds=5)(text)


def test_llm_splitter_is_a_config_choice(make_cfg):
    cfg = make_cfg(["ablation=step_delete", "ablation/splitter=llm", "ablation.splitter.base_url=http://127.0.0.1:9/v1",
                    "ablation.splitter.model=llama-3.3-70b"])
    validate_prepare_config(cfg)
    (fn,) = [instantiate(t) for t in cfg.ablation.transforms]
    assert type(fn.splitter).__name__ == "LLMSplitter"
    with pytest.raises(ConfigError, match=r"ablation\.splitter\.base_url: a required value is missing"):
        validate_prepare_config(make_cfg(["ablation=step_delete", "ablation/splitter=llm"]))


def test_every_ablation_names_registered_plugins_that_check_their_own_parameters(make_cfg):
    """One plugin pattern: each conf/ablation file's transforms are classes of the registry, built (and
    so checked) before any run dir; a bad parameter is one line naming its key, all of them at once."""
    from reasoning_sft.registry import ABLATIONS as TRANSFORMS
    from conftest import CONF
    for path in sorted((CONF / "ablation").glob("*.yaml")):
        cfg = make_cfg([f"ablation={path.stem}"] + (["ablation/splitter=paragraph"] if "step" in path.stem else [])
                       + (["ablation.llm.base_url=http://127.0.0.1:9/v1"] if path.stem == "reflection_rewrite" else []))
        for node in cfg.ablation.transforms:
            plugin = instantiate(node)
            assert TRANSFORMS[plugin.name] is type(plugin), path.name
            assert callable(plugin) and callable(type(plugin).card)
    with pytest.raises(ConfigError) as err:
        validate_prepare_config(make_cfg(["ablation=digit_corruption", "ablation.rate=2", "ablation.scope=all"]))
    assert str(err.value).splitlines() == ["2 problems in the config:", "  ablation.rate=2: expected a number in [0, 1]",
                                           "  ablation.scope='all': expected one of ['response', 'thinking']"]
    with pytest.raises(ConfigError, match=r"^data\.num_samples=None: expected an integer with ablation\.target_tokens"):
        validate_prepare_config(make_cfg(["ablation=combine", "ablation.target_tokens=4000"]))


def test_an_ablation_that_changes_nothing_says_so_before_training(make_cfg, capsys):
    """Issue 30: a step shuffle at a rate that moves no step on short traces changes 0 samples: one line."""
    from reasoning_sft.data.selection import prepare_records
    from reasoning_sft.training.models import train_tiny_tokenizer
    cfg = make_cfg(["ablation=step_shuffle", "ablation.rate=0.33", "data.source.num_problems=40"])
    g = validate_prepare_config(cfg)
    _, card = prepare_records(g.data, list(g.transforms), g.ablation, g.seed, train_tiny_tokenizer(256))
    assert card["ablation"]["changes"]["step_shuffle"]["samples_changed"] == 0
    err = capsys.readouterr().err
    assert "warning: ablation step_shuffle changed 0 of 40 samples (rate 0.33" in err
    assert "this arm trains on unchanged data" in err


def test_reflection_rewrite_runs_the_released_prompt_per_sample_and_checks_every_reply(traces, chat_endpoint,
                                                                                       tmp_path):
    """Sky-T1's tools/tag_output.py on real R1 traces: per sample with probability `rate`, the whole
    response (Sky-T1 headers) rewritten with `remove_reflection_prompt`, temperature 0.7, 16,384 tokens;
    replies that are error strings or lose the headers keep their sample, counted; replies are cached."""
    from reasoning_sft.data.ablations import (REMOVE_REFLECTION_PROMPT, ReflectionRewrite, RewriteClient,
                                              skyt1_response)
    recs = traces[:8]

    def reply(prompt, model):
        content = prompt.split("apply the instructions to the following content: ", 1)[1]
        if recs[1].thinking[:200] in content:
            return "Error processing content: Request timed out."          # what their script writes into the data
        if recs[2].thinking[:200] in content:
            return content.replace("<|end_of_thought|>", "")               # a header lost
        # the model's rewrite: every line holding "Wait" gone
        return "\n".join(line for line in content.split("\n") if "Wait" not in line)

    client = RewriteClient(base_url=chat_endpoint(reply), model="gpt-4o-mini", workers=4,
                           cache_dir=str(tmp_path / "cache"))
    out = ReflectionRewrite(rate=1.0, llm=client)(recs, ctx())
    request = chat_endpoint.requests[0]
    assert request["messages"][0] == {"role": "system", "content": "You are a helpful chatbot."}
    assert (request["temperature"], request["max_tokens"], request["model"]) == (0.7, 16384, "gpt-4o-mini")
    prompts = {r["messages"][1]["content"] for r in chat_endpoint.requests}
    assert prompts == {REMOVE_REFLECTION_PROMPT.format(content=skyt1_response(r)) for r in recs}
    for i, (before, after) in enumerate(zip(recs, out)):
        if i in (1, 2):                                                      # unusable: kept as it was
            assert (after.thinking, after.answer) == (before.thinking, before.answer)
        else:
            assert "Wait" not in after.thinking and after.answer == before.answer
            assert after.thinking != before.thinking or "Wait" not in before.thinking
    card = summarize(out)["reflection_rewrite"]
    assert card["rewritten"] == 6 and card["rejected"] == 2
    assert card["rejected_by_reason"] == {"an error string": 1, "headers missing or out of order": 1}
    # a re-run reads the usable replies from the cache and asks again only for the rejected two
    again = ReflectionRewrite(rate=1.0, llm=client)(recs, ctx())
    assert len(chat_endpoint.requests) == 8 + 2 and summarize(again)["reflection_rewrite"]["from_cache"] == 6
    # per sample, with probability rate, decided by the seeded draw in order (`random.random() > ratio`)
    half = ReflectionRewrite(rate=0.5, llm=client)(traces[:40], ctx(seed=3))
    draws = ctx(seed=3).rng
    assert [c["rewritten"] or c.get("rejected", 0) for r in half for c in r.metadata["ablation"]] == \
        [int(not draws.random() > 0.5) for _ in range(40)]
    with pytest.raises(DataError, match=r"record .*: the rewrite is unusable \(an error string\)"):
        ReflectionRewrite(rate=1.0, llm=client, fallback="raise")(recs[:2], ctx())
    with pytest.raises(ConfigError, match="ablation.fallback='drop': expected 'keep' or 'raise'"):
        ReflectionRewrite(rate=1.0, llm=client, fallback="drop")

"""s1 curation on the real s1K question pool against the bundled evaluation sets."""

from __future__ import annotations

import json

import pytest

from reasoning_sft.curate import run_curate
from reasoning_sft.data.curation import EvalIndex, quality_issue
from reasoning_sft.data.records import Record

POOL = ["model=tiny", "data=jsonl", "data.source.path=${paths.data_dir}/s1k_questions_no_traces.jsonl",
        "data.source.fields.question=question", "data.source.fields.thinking=solution",
        "data.source.fields.answer=solution", "data.source.fields.id=id"]
# Read by hand from the matches: 4 verbatim MATH-500 / OlympiadBench problems, and 3 near-verbatim
# (an ellipse problem reworded, the same problem with more context, the same F(z) set-up asking for a+b).
CONTAMINATED = {"124", "81", "631", "181", "255", "191", "498"}


@pytest.fixture(scope="module")
def curated(tmp_path_factory, shared_data):
    from conftest import compose_config
    out = tmp_path_factory.mktemp("curate")
    cfg = compose_config(POOL + ["curation.diversity.num_samples=200", "curation.difficulty.enabled=false"],
                         "curate", out / "run")
    summary = run_curate(cfg)
    return summary["data_card"], [json.loads(line) for line in open(out / "run" / "removed.jsonl")], out / "run"


def test_decontamination_removes_the_real_duplicates(curated):
    """The default is s1's rule (any shared 8-gram): it removes 6 of the 7 real duplicates and many
    more; it misses 498 (the F(z) set-up asking for a+b), whose shared words are glued to punctuation
    differently (s1 splits on whitespace only). Our overlap rule, counted beside it in the card, flags
    exactly the 7."""
    card, removed, _ = curated
    contaminated = {r["id"]: r for r in removed if r["reason"] == "contamination"}
    assert CONTAMINATED - {"498"} < set(contaminated) and "498" not in contaminated
    assert card["decontamination_flagged"] == {"s1": len(contaminated), "overlap": 7}
    assert card["decontamination_method"] == "s1" and card["quality_flagged"]["s1"] <= card["quality_flagged"]["ours"]
    assert contaminated["124"]["matches"][0]["eval_item"] == "math500.jsonl:286"


def test_the_overlap_variant_removes_exactly_the_real_duplicates(shared_data):
    from reasoning_sft.data.curation import CurationContext, Decontamination
    from reasoning_sft.data.loaders import load_table
    stage = Decontamination(enabled=True, ngram=8, max_item_frequency=2, min_shared_ngrams=10, min_overlap=0.4,
                            eval_sets={"math500.jsonl": "problem", "aime24.jsonl": "problem", "aime25.jsonl": "problem",
                                       "amc23.jsonl": "problem", "olympiadbench.jsonl": "question"},
                            data_dir=str(shared_data), method="overlap")
    records = load_table(str(shared_data / "s1k_questions_no_traces.jsonl"),
                         {"question": "question", "thinking": "solution", "answer": "solution", "id": "id"})
    _, removed, _ = stage(list(records), CurationContext(0, len))
    assert set(removed) == CONTAMINATED
    assert removed["124"]["matches"][0]["eval_item"] == "math500.jsonl:286"
    assert removed["124"]["matches"][0]["overlap"] == 1.0
    assert removed["255"]["matches"][0]["eval_item"] == "olympiadbench.jsonl:518"


def test_boilerplate_alone_is_not_contamination():
    index = EvalIndex.build([
        (f"aime:{i}", f"Let x be the {w} value. It can be written as $\\frac{{m}}{{n}}$, where $m$ and $n$ are "
                      f"relatively prime positive integers. Find $m+n$.") for i, w in enumerate(
            ["largest", "smallest", "expected", "average", "median"])], 8)
    text = ("A bag holds 3 red and 4 blue balls. The chance of two reds is $\\frac{m}{n}$, where $m$ and $n$ "
            "are relatively prime positive integers. Find $m+n$.")
    assert index.matches(text, 8, max_item_frequency=2, min_shared=10, min_overlap=0.4) == []
    same = "Let x be the largest value. It can be written as $\\frac{m}{n}$, where $m$ and $n$ are relatively"
    assert index.matches(same + " prime positive integers. Find $m+n$.", 8, 5, 5, 0.4)[0]["overlap"] == 1.0


def test_every_record_is_accounted_for(curated):
    card, removed, run_dir = curated
    assert card["records_loaded"] == 1000
    assert card["records_curated"] == 200 == sum(1 for _ in open(run_dir / "curated.jsonl"))
    assert card["records_loaded"] == card["records_curated"] + len(removed)
    stages = {s["stage"]: s for s in card["stages"]}
    assert list(stages) == ["quality", "dedup", "decontamination", "diversity"]
    for a, b in zip(card["stages"], card["stages"][1:]):
        assert a["out"] == b["in"]
    assert stages["quality"]["in"] - stages["quality"]["out"] == sum(stages["quality"]["removed_by_reason"].values())
    assert len(card["domains"]) >= 4                     # the keyword classifier spread the pool


def test_quality_filters():
    rec = lambda q, src="": Record(id="x", question=q, thinking="t", answer="a", source=src)
    assert quality_issue(rec("See ![fig](a.png). Find x."), ["aime"]) == "image reference"
    assert quality_issue(rec("[asy] draw((0,0)--(1,1)); [/asy] Find x."), ["aime"]) == "[asy] diagram"
    assert quality_issue(rec("[asy] draw((0,0)--(1,1)); [/asy] Find x.", "AIME 2020"), ["aime"]) is None
    assert quality_issue(rec("3. Find the sum of the roots."), []) == "question-numbering artefact"
    assert quality_issue(rec("Compute:\n1. x\n2. y\n4. z"), []) == "inconsistent numbering"
    assert quality_issue(rec("Error code: 429 rate limit exceeded"), []) == "API error text"
    assert quality_issue(rec("+-----+\n|     |\n+-----+\nFind the area."), []) == "ASCII-art diagram"
    assert quality_issue(rec("Find all primes p with p+2 prime."), []) is None


def _pick(recs, n, seed, **kw):
    import random
    from reasoning_sft.data.curation import diversity_sample
    return diversity_sample(recs, n, random.Random(seed), lambda t: len(t.split()), **kw)[0]


def test_diversity_prefers_long_traces_within_a_domain():
    recs = [Record(id=str(i), question="triangle area", thinking="w " * (i + 1), answer="a", domain="51 Geometry")
            for i in range(40)]
    picks = [_pick(recs, 1, s)[0].id for s in range(300)]
    assert picks.count("39") > 120 and picks.count("38") > 50   # P = 1/2, 1/4 for the two longest


def test_diversity_is_s1s_algorithm_step_for_step():
    from omegaconf import OmegaConf
    rare = [Record(id="rare", question="q", thinking="w", answer="a", domain="05 Combinatorics")]
    common = [Record(id=f"c{i}", question="q", thinking="w " * (i + 1), answer="a", domain="11 Number theory")
              for i in range(50)]
    # a domain is drawn uniformly, not by its size: the one-record domain is in nearly every 10-pick
    assert sum(any(r.id == "rare" for r in _pick(rare + common, 10, s)) for s in range(100)) >= 95
    # an emptied domain leaves the draw: asking for everything returns everything, each once
    assert sorted(r.id for r in _pick(rare + common, 51, 0)) == sorted(r.id for r in rare + common)
    # S starts with what include_first names (s1: AIME, GPQA, and MATH traces over 5,600 tokens)
    pool = ([Record(id=f"aime{i}", question="q", thinking="w", answer="a", source="qq8933/AIME_1983_2024",
                    domain="11 Number theory") for i in range(3)]
            + [Record(id=f"math{i}", question="q", thinking="w " * (5590 + 10 * i), answer="a",
                      source="qfq/openaimath/Algebra", domain="12 Field theory and polynomials") for i in range(4)]
            + common)
    include = OmegaConf.create({"sources": ["AIME", "gpqa"], "match": "substring", "long_sources": {"openaimath": 5600}})
    picked = _pick(pool, 8, 0, include_first=include)
    ids = [r.id for r in picked]
    assert ids[:5] == ["aime0", "aime1", "aime2", "math2", "math3"]   # MATH over 5,600 tokens only (not 5,590 / 5,600)
    assert len(ids) == 8 and len(set(ids)) == 8
    with pytest.raises(Exception, match="include_first selects 5 records, more than"):
        _pick(pool, 4, 0, include_first=include)


def test_domains_are_msc_classes_from_an_llm_classifier(chat_endpoint, tmp_path, shared_data):
    from conftest import compose_config

    def reply(prompt, model):
        question = prompt.split("## Question\n", 1)[1].split("## Classification rubrics", 1)[0].lower()
        assert "### Number theory\n* Code: 11" in prompt and "two-digit code" in prompt   # s1's rubric prompt
        return ("Triangles are geometry.\n51" if "triangle" in question else
                "Primes.\n11" if "prime" in question else "I am not sure.")

    url = chat_endpoint(reply)
    cfg = compose_config(POOL + ["data.num_samples=60", "curation.decontamination.enabled=false",
                                 "curation.difficulty.enabled=false", "curation.diversity.num_samples=60",
                                 "curation.diversity.classifier._target_=reasoning_sft.data.domains.LLMDomainClassifier",
                                 "~curation.diversity.classifier._partial_",
                                 f"+curation.diversity.classifier.base_url={url}",
                                 "+curation.diversity.classifier.model=judge"],
                         "curate", tmp_path / "run")
    card = run_curate(cfg)["data_card"]
    assert {"51 Geometry", "11 Number theory"} <= set(card["domains"])
    assert all(d in ("51 Geometry", "11 Number theory") or d.endswith("(keywords: unusable reply)") for d in card["domains"])
    assert len(chat_endpoint.requests) == card["stages"][-1]["in"]     # one call per record to classify
    assert card["length_tokenizer"] == "tiny"


def test_curation_measures_length_in_the_training_models_tokenizer(make_cfg):
    from conftest import compose_config
    cfg = compose_config([], "curate")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-32B-Instruct"     # s1's model, not the demo tokenizer


def test_difficulty_without_a_solver_signal_is_refused(tmp_path, shared_data):
    from conftest import compose_config
    from reasoning_sft.errors import ConfigError
    cfg = compose_config(POOL, "curate", tmp_path / "run")
    with pytest.raises(ConfigError, match=r"curation\.difficulty: enabled, but nothing measures difficulty"):
        run_curate(cfg)
    assert not (tmp_path / "run" / "curated.jsonl").exists()
    cfg = compose_config(POOL + ["curation.difficulty.solver_answer_fields=[solution]"], "curate", tmp_path / "run2")
    with pytest.raises(ConfigError, match="no record has one"):
        run_curate(cfg)


def test_decontamination_covers_gpqa_when_given(tmp_path, shared_data):
    import csv
    from conftest import compose_config
    rows = [json.loads(line) for line in open(shared_data / "s1k_questions_no_traces.jsonl")]
    path = tmp_path / "gpqa_diamond.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["Question", "Correct Answer"])
        w.writeheader()
        w.writerow({"Question": rows[10]["question"], "Correct Answer": "x"})
        w.writerow({"Question": "An unrelated question about the boiling point of water at altitude.", "Correct Answer": "y"})
    cfg = compose_config(POOL + ["curation.difficulty.enabled=false", "curation.diversity.enabled=false",
                                 f"eval.gpqa_path={path}"], "curate", tmp_path / "run")
    card = run_curate(cfg)["data_card"]
    removed = {json.loads(line)["id"]: json.loads(line) for line in open(tmp_path / "run" / "removed.jsonl")}
    assert removed[str(rows[10]["id"])]["matches"][0]["eval_item"] == "gpqa_diamond:1"
    assert "gpqa_diamond" in card["decontamination_sets"]


def test_difficulty_drops_what_a_solver_answered_correctly(tmp_path):
    from conftest import compose_config
    rows = [{"id": i, "q": f"What is {i} + {i}?", "t": "think " * 10, "a": f"\\boxed{{{2 * i}}}", "gold": str(2 * i),
             "qwen7b": f"The answer is \\boxed{{{2 * i if i % 3 == 0 else 2 * i + 1}}}", "qwen32b_ok": i % 5 == 0}
            for i in range(1, 31)]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_config(["model=tiny", "data=jsonl", f"data.source.path={path}", "data.source.fields.question=q",
                          "data.source.fields.thinking=t", "data.source.fields.answer=a", "data.source.fields.id=id",
                          "data.source.fields.gold_answer=gold", "data.source.fields.extra=[qwen7b,qwen32b_ok]",
                          "curation.decontamination.enabled=false", "curation.diversity.enabled=false",
                          "curation.difficulty.solver_answer_fields=[qwen7b]",
                          "curation.difficulty.solved_by_fields=[qwen32b_ok]"], "curate", tmp_path / "run")
    card = run_curate(cfg)["data_card"]
    solved = {i for i in range(1, 31) if i % 3 == 0 or i % 5 == 0}
    assert card["records_curated"] == 30 - len(solved)
    removed = {json.loads(line)["id"]: json.loads(line) for line in open(tmp_path / "run" / "removed.jsonl")}
    assert {int(k) for k in removed} == solved
    assert removed["15"]["solved_by"] == ["qwen32b_ok", "qwen7b"]


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
def test_difficulty_runs_a_solver_model_on_the_pool(tmp_path, tiny_tokenizer, replicas):
    """The solver's answers are one process's generations, whether one engine or two replicas
    (curation.difficulty.solver_data_parallel_size) answered them."""
    from conftest import compose_config
    from reasoning_sft.evaluation.generation import HFEngine, generate
    from reasoning_sft.data.formatting import render_prompt
    from reasoning_sft.evaluation.prompts import PROMPTS
    from reasoning_sft.training.models import build_tiny_model
    solver = build_tiny_model(tiny_tokenizer, seed=3)
    solver.save_pretrained(tmp_path / "solver")
    tiny_tokenizer.save_pretrained(tmp_path / "solver")
    questions = [f"What is {i} + {i}?" for i in range(6)]
    from reasoning_sft.training.models import load_pretrained_model
    saved = load_pretrained_model(tiny_tokenizer, str(tmp_path / "solver"), dtype=solver.dtype)
    asked = [render_prompt(PROMPTS["qwen_math"].user.format(question=q), tiny_tokenizer) for q in questions]
    expected = [t for t, _ in generate(HFEngine(saved, tiny_tokenizer), asked, 12, 4)]
    assert all(e.strip() for e in expected)
    path = tmp_path / "pool.jsonl"
    # gold = the solver's own (extracted or whole) output for even rows: those count as solved
    from reasoning_sft.data.answers import extract_answer
    golds = [(extract_answer(e) or e) if i % 2 == 0 else "no such answer 12345" for i, e in enumerate(expected)]
    path.write_text("".join(json.dumps({"id": i, "q": q, "t": "think", "a": "a", "gold": g}) + "\n"
                            for i, (q, g) in enumerate(zip(questions, golds))))
    cfg = compose_config(["model=tiny", "data=jsonl", f"data.source.path={path}", "data.source.fields.question=q",
                          "data.source.fields.thinking=t", "data.source.fields.answer=a", "data.source.fields.id=id",
                          "data.source.fields.gold_answer=gold", "curation.quality.enabled=false",
                          "curation.decontamination.enabled=false", "curation.diversity.enabled=false",
                          f"curation.difficulty.solver_models=[{tmp_path / 'solver'}]",
                          "curation.difficulty.solver_max_new_tokens=12", "curation.difficulty.solver_batch_size=4",
                          f"curation.difficulty.solver_data_parallel_size={replicas}"],
                         "curate", tmp_path / "run")
    card = run_curate(cfg)["data_card"]
    kept = [json.loads(line) for line in open(tmp_path / "run" / "curated.jsonl")]
    removed = [json.loads(line) for line in open(tmp_path / "run" / "removed.jsonl")]
    key = f"solver:{tmp_path / 'solver'}"
    assert [r["metadata"][key] for r in kept] == [expected[int(r["id"])] for r in kept]   # the engine's answers
    assert sorted(int(r["id"]) for r in removed) == [0, 2, 4] and card["records_curated"] == 3


def test_curation_stages_are_plugins_checked_before_any_run_dir(tmp_path):
    """One plugin pattern: each `curation.<stage>` is a class built from its node; bad parameters of
    several stages are reported together, in one message, and no run dir is made."""
    from conftest import compose_config
    from reasoning_sft.curate import build_stages
    from reasoning_sft.errors import ConfigError
    run_dir = tmp_path / "run"
    cfg = compose_config(["curation.decontamination.ngram=0", "curation.diversity.num_samples=0",
                          "curation.difficulty.solved_by_fields=[qwen7b_correct]"], "curate", run_dir)
    with pytest.raises(ConfigError) as err:
        run_curate(cfg)
    assert str(err.value).splitlines() == ["2 problems in the config:",
                                           "  curation.decontamination.ngram=0: expected an integer >= 1",
                                           "  curation.diversity.num_samples=0: expected an integer >= 1"]
    assert not run_dir.exists()
    stages = build_stages(compose_config(["curation.difficulty.enabled=false"], "curate", run_dir))
    assert list(stages) == ["quality", "dedup", "decontamination", "difficulty", "diversity"]
    assert all(callable(s) and isinstance(s.enabled, bool) for s in stages.values())

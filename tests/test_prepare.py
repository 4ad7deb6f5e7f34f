"""The prepare stage: selection for sweeps and the data card, on the real R1 traces."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from reasoning_sft.errors import ConfigError
from reasoning_sft.data.ablations import NUMBER
from reasoning_sft.data.loaders import load_r1
from reasoning_sft.prepare import run_prepare


def _prepare(make_cfg, overrides):
    return run_prepare(make_cfg(["data=r1_traces"] + overrides, config_name="prepare"))["data_card"]


def _ids(tmp_path):
    return [json.loads(line)["id"] for line in open(tmp_path / "run" / "prepared.jsonl")]


def test_num_samples_nest_and_follow_the_seed(make_cfg, tmp_path, shared_data):
    _prepare(make_cfg, ["data.num_samples=50"])
    small = _ids(tmp_path)
    card = _prepare(make_cfg, ["data.num_samples=200"])
    large = _ids(tmp_path)
    assert len(small) == 50 and len(large) == 200 and set(small) <= set(large)
    assert card["selection"]["dropped_over_num_samples"] == 91 and card["records_loaded"] == 291
    _prepare(make_cfg, ["data.num_samples=50", "seed=7"])
    assert set(_ids(tmp_path)) != set(small)
    _prepare(make_cfg, ["data.num_samples=50"])
    assert _ids(tmp_path) == small                                     # same seed, same set, same order


def test_length_buckets_are_balanced_and_filters_counted(make_cfg, tmp_path, shared_data, tiny_tokenizer):
    lengths = sorted(len(tiny_tokenizer(r.thinking, add_special_tokens=False)["input_ids"])
                     for r in load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl")))
    t1, t2 = lengths[97], lengths[194]                                   # terciles of the real traces
    card = _prepare(make_cfg, [f"data.length_buckets=[[0,{t1}],[{t1},{t2}],[{t2},1000000]]",
                               "data.samples_per_bucket=20"])
    assert card["records_prepared"] == 60
    assert card["selection"]["buckets"] == {f"0-{t1}": 20, f"{t1}-{t2}": 20, f"{t2}-1000000": 20}
    assert card["selection"]["dropped_outside_buckets_or_over_quota"] == 291 - 60
    prepared = [len(tiny_tokenizer(json.loads(line)["thinking"], add_special_tokens=False)["input_ids"])
                for line in open(tmp_path / "run" / "prepared.jsonl")]
    assert sum(n < t1 for n in prepared) == sum(t1 <= n < t2 for n in prepared) == sum(n >= t2 for n in prepared) == 20
    card = _prepare(make_cfg, [f"data.min_trace_tokens={t1}", f"data.max_trace_tokens={t2}"])
    assert card["trace_tokens"]["min"] >= t1 and card["trace_tokens"]["max"] <= t2
    assert card["records_prepared"] + card["selection"]["dropped_trace_length"] == 291
    with pytest.raises(ConfigError, match=r"data\.length_buckets: bucket \[0, 10\) tokens has 0 records"):
        _prepare(make_cfg, ["data.length_buckets=[[0,10]]", "data.samples_per_bucket=1"])
    with pytest.raises(ConfigError, match=r"data\.num_samples=1000: only 291 records"):
        _prepare(make_cfg, ["data.num_samples=1000"])


def test_card_reports_the_ablation_and_records_line_up(make_cfg, tmp_path, shared_data):
    card = _prepare(make_cfg, ["ablation=digit_corruption", "ablation.rate=0.7"])
    changes = card["ablation"]["changes"]["digit_corruption"]
    assert abs(changes["replaced_share"] - 0.7) < 0.02 and changes["samples"] == 291
    originals = {r.id: r for r in load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"))}
    for line in open(tmp_path / "run" / "prepared.jsonl"):
        rec = json.loads(line)
        assert rec["question"] == originals[rec["id"]].question
        assert NUMBER.split(rec["answer"]) == NUMBER.split(originals[rec["id"]].answer)   # only numbers change
    assert len(card["content_hash"]) == 16 and card["records_prepared"] == 291


def test_prepare_cli(tmp_path, shared_data):
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.prepare", "data=r1_traces", "ablation=step_shuffle",
         "ablation.rate=0.33", "data.num_samples=20", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "prepared 20" in proc.stdout
    card = json.loads((tmp_path / "run" / "data_card.json").read_text())
    assert card["ablation"]["stages"] == [{"transform": "step_shuffle", "records_in": 20, "records_out": 20}]


def _r1_table(shared_data, path, wrong_every=None):
    """The R1 traces as a plain question / thinking / answer / gold table (answers made wrong every
    `wrong_every`-th row)."""
    rows = []
    for i, rec in enumerate(load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"))):
        answer = rec.answer if not wrong_every or i % wrong_every else rec.answer.replace("\\boxed{", "\\boxed{1000+")
        rows.append({"problem": rec.question, "reasoning": rec.thinking, "response": answer,
                     "gold": rec.metadata["gold_answer"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.parametrize("ablation,check", [
    ("digit_corruption", lambda text: all(n.isdigit() and int(n) <= 10 for n in NUMBER.findall(text))),
    ("keyword_removal", lambda text: not __import__("re").search(r"\b(wait|hmm|alternatively)\b", text, 2)),
])
def test_the_documented_prepare_interface_runs_as_written(tmp_path, shared_data, ablation, check):
    _r1_table(shared_data, tmp_path / "traces.jsonl")
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "reasoning_sft.prepare", "data=jsonl", f"data.source.path={tmp_path / 'traces.jsonl'}",
                    "data.source.fields.question=problem", "data.source.fields.thinking=reasoning",
                    "data.source.fields.answer=response", f"ablation={ablation}", "ablation.rate=1.0",
                    f"hydra.run.dir={run}"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    rows = [json.loads(line) for line in open(run / "prepared.jsonl")]
    assert len(rows) == 291 and all(r["thinking"].strip() and r["answer"].strip() for r in rows)
    assert all(check(r["thinking"]) for r in rows)
    if ablation == "digit_corruption":
        assert all(check(r["answer"]) for r in rows)   # the solution too, as SkyThought's script does


def test_base_set_keeps_correct_responses_and_natural_wrong_answers_draw_the_rest(make_cfg, tmp_path, shared_data):
    _r1_table(shared_data, tmp_path / "pool.jsonl", wrong_every=4)
    source = ["data=jsonl", f"data.source.path={tmp_path / 'pool.jsonl'}", "data.source.fields.question=problem",
              "data.source.fields.thinking=reasoning", "data.source.fields.answer=response",
              "data.source.fields.gold_answer=gold"]
    base = run_prepare(make_cfg(source + ["data.keep=correct"], config_name="prepare"))["data_card"]
    wrong = 73   # rows 0, 4, ..., 288
    assert base["correctness"] == {"keep": "correct", "graded": 291, "correct": 291 - wrong, "graded_wrong": wrong,
                                   "no_answer": 0, "no_gold": 0, "outcomes": base["correctness"]["outcomes"],
                                   "kept": 291 - wrong}
    assert base["records_prepared"] == 291 - wrong
    card = run_prepare(make_cfg(source + ["data.keep=correct", "data.num_samples=50", "ablation=wrong_answers"],
                                config_name="prepare"))["data_card"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "prepared.jsonl")]
    assert len(rows) == 50 and all("\\boxed{1000+" in r["answer"] for r in rows)
    assert card["ablation"]["changes"]["wrong_answers"]["shortfall"] == 0
    with pytest.raises(Exception, match="data.keep=correct: none of the 291 records has a gold answer"):
        run_prepare(make_cfg(source[:-1] + ["data.keep=correct"], config_name="prepare"))


def test_combine_makes_data_num_samples_from_distinct_problems(make_cfg, tmp_path, shared_data):
    card = _prepare(make_cfg, ["ablation=combine", "data.num_samples=100"])
    rows = [json.loads(line) for line in open(tmp_path / "run" / "prepared.jsonl")]
    parts = [p for r in rows for p in r["metadata"]["parts"]]
    assert len(rows) == 100 == card["records_prepared"] and len(parts) == len(set(parts)) == 200
    assert card["selection"].get("dropped_over_num_samples") is None   # the pool was not cut first

"""Synthetic generator and the loaders, on the real files in ../shared/data."""

from __future__ import annotations

import json

import pytest

from reasoning_sft.data.loaders import DataError, load_r1, load_s1k, load_sharegpt
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.data.answers import last_boxed
from reasoning_sft.data.records import content_hash, read_jsonl, write_jsonl


def test_synthetic_is_seeded_prefix_stable_and_held_out():
    a, b = generate_records(300, seed=7), generate_records(300, seed=7)
    assert [r.question for r in a] == [r.question for r in b]
    assert content_hash(a) == content_hash(b) != content_hash(generate_records(300, seed=8))
    assert [r.question for r in generate_records(100, seed=7)] == [r.question for r in a[:100]]
    test = generate_records(300, seed=7, split="test")
    assert len({_terms(r.question) for r in test}) == 300
    assert not {_terms(r.question) for r in a} & {_terms(r.question) for r in test}


def _terms(question: str) -> tuple[int, ...]:
    return tuple(int(t.strip("?.")) for t in question.split() if t.strip("?.").isdigit())


def test_synthetic_traces_give_every_ablation_something_to_act_on():
    recs = generate_records(200, seed=0, num_terms=4)
    for r in recs:
        assert last_boxed(r.answer) == r.metadata["gold_answer"]
        assert sum(c.isdigit() for c in r.thinking) > 10
        assert r.thinking.count("Step ") == 3
    with_reflection = [r for r in recs if any(k in r.thinking for k in ("Wait", "Hmm", "Alternatively"))]
    assert 0.7 < len(with_reflection) / len(recs) < 0.95   # P(any of 3 steps reflects) = 1 - 0.5^3


def test_synthetic_answers_are_correct_sums():
    for r in generate_records(100, seed=2):
        assert int(r.metadata["gold_answer"]) == sum(_terms(r.question))


def test_records_round_trip(tmp_path):
    recs = generate_records(10, seed=0)
    assert write_jsonl(recs, tmp_path / "r.jsonl") == 10
    assert read_jsonl(tmp_path / "r.jsonl") == recs


def test_load_s1k_sample(shared_data):
    recs = load_s1k(str(shared_data / "s1k_sample.jsonl"), trajectory_field="gemini_thinking_trajectory",
                    attempt_field="gemini_attempt")
    assert len(recs) == 5
    assert all(len(r.thinking) > 500 and r.answer and r.question for r in recs)
    assert {r.domain for r in recs} <= {"math", "science", "crossword"}


def test_load_r1_traces_split_thinking_from_the_boxed_answer(shared_data):
    recs = load_r1(str(shared_data / "r1_distill_qwen32b_aime_traces.jsonl"))
    assert len(recs) == 291
    for r in recs:
        assert last_boxed(r.answer) is not None, r.id
        assert len(r.thinking) > len(r.answer)
        assert r.metadata["gold_answer"]


def test_load_sharegpt(tmp_path):
    row = {"system": "sys", "conversations": [
        {"from": "user", "value": "What is 1+1?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\n1+1 is 2.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\n\\boxed{2}\n\n<|end_of_solution|>"}]}
    path = tmp_path / "sky.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (rec,) = load_sharegpt(str(path))
    assert (rec.question, rec.thinking, rec.answer) == ("What is 1+1?", "1+1 is 2.", "\\boxed{2}")


def test_bad_input_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "solution": "a\\n\\nb \\\\boxed{1}"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        load_r1(str(path), gold_field=None)
    path.write_text('{"question": "q", "solution": ""}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: field 'solution' is missing or empty"):
        load_r1(str(path), gold_field=None)
    with pytest.raises(DataError, match=r"nowhere\.jsonl: no such file"):
        load_r1(str(tmp_path / "nowhere.jsonl"))


def test_hub_name_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="offline"):
        load_s1k("simplescaling/s1K")


def test_on_error_skip_counts_every_bad_line(tmp_path):
    good = '{"question": "q%d", "solution": "think\\n\\nso \\\\boxed{1}"}\n'
    path = tmp_path / "mixed.jsonl"
    with open(path, "wb") as f:
        f.write((good % 1).encode())
        f.write(b"{broken\n")                                         # line 2: bad JSON
        f.write(b'{"question": "caf\xe9", "solution": "x"}\n')        # line 3: latin-1, not UTF-8
        f.write(b'{"question": "q4", "solution": ""}\n')              # line 4: empty trace
        f.write((good % 5).encode())
    with pytest.raises(DataError, match=r"mixed\.jsonl:2: not valid JSON"):
        load_r1(str(path), gold_field=None)
    loaded = load_r1(str(path), gold_field=None, on_error="skip")
    assert [r.question for r in loaded] == ["q1", "q5"]
    assert loaded.skipped["count"] == 3
    assert [e.split(": ")[0] for e in loaded.skipped["first"]] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not valid UTF-8" in loaded.skipped["first"][1]


def test_table_loader_maps_columns_and_the_card_counts_skips(make_cfg, tmp_path):
    from reasoning_sft.prepare import run_prepare
    path = tmp_path / "mine.jsonl"
    rows = [{"problem": f"p{i}", "reasoning": f"r{i} " * 5, "response": f"\\boxed{{{i}}}", "subject": "algebra"}
            for i in range(6)] + [{"problem": "p6", "reasoning": "", "response": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = ["data=jsonl", f"data.source.path={path}", "data.source.fields.question=problem",
                 "data.source.fields.thinking=reasoning", "data.source.fields.answer=response",
                 "data.source.fields.domain=subject", "data.source.on_error=skip"]
    card = run_prepare(make_cfg(overrides, config_name="prepare"))["data_card"]
    assert card["records_loaded"] == 6 and card["skipped_by_loader"]["count"] == 1
    assert "mine.jsonl:7: field 'reasoning' is missing or empty" in card["skipped_by_loader"]["first"][0]
    assert card["domains"] == {"algebra": 6}
    with pytest.raises(Exception, match=r"data\.source\.on_error='ignore'"):
        run_prepare(make_cfg(overrides[:-1] + ["data.source.on_error=ignore"], config_name="prepare"))


def test_cli_reports_bad_data_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q", "thinking": "t", "answer": "a"}\n{oops\n')
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.prepare", "data=jsonl", f"data.source.path={path}",
         f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(f"data error: {path}:2: not valid JSON (Expecting property name "
                                        "enclosed in double quotes)")
    assert "Traceback" not in proc.stderr


def test_repeated_ids_and_empty_files_are_named(tmp_path):
    import json

    from reasoning_sft.data.loaders import load_r1
    from reasoning_sft.errors import DataError
    path = tmp_path / "traces.jsonl"
    row = {"question": "q", "solution": "thinking\n\nThe answer is \\boxed{1}.", "gold_answer": "1"}
    path.write_text("".join(json.dumps({"id": i, **row}) + "\n" for i in ("a", "b", "a")))
    with pytest.raises(DataError, match=f"{path}:3: id 'a' repeats the one at {path}:1"):
        load_r1(str(path))
    assert len(load_r1(str(path), on_error="skip")) == 2 and load_r1(str(path), on_error="skip").skipped["count"] == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=f"{empty}: no records \\(the file holds no rows\\)"):
        load_r1(str(empty))


def test_skyt1_code_and_math_samples_are_told_apart_and_selected(tmp_path, make_cfg):
    import json

    from reasoning_sft.prepare import run_prepare
    code_user = ("Generate an executable Python function generated from the given prompt. The function should take "
                 "stdin as input and print the output. Simply call the function after the definition.Read n.")
    reply = "<|begin_of_thought|>\n\nthink\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n{}\n\n<|end_of_solution|>"
    rows = [{"system": "s", "conversations": [{"from": "user", "value": code_user if i % 3 == 0 else f"What is {i}+{i}?"},
                                              {"from": "assistant", "value": reply.format(i)}]} for i in range(30)]
    path = tmp_path / "sky.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["data=skyt1_17k", f"data.source.path={path}"]
    card = run_prepare(make_cfg(base, config_name="prepare"))["data_card"]
    assert card["domains"] == {"code": 10, "math": 20}
    card = run_prepare(make_cfg(base + ["data.domains=[code]"], config_name="prepare"))["data_card"]
    assert card["domains"] == {"code": 10} and card["selection"]["dropped_domain"] == 20
    with pytest.raises(Exception, match=r"data.domains=\['physics'\]: no record"):
        run_prepare(make_cfg(base + ["data.domains=[physics]"], config_name="prepare"))

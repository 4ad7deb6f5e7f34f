"""trainer.reuse_trained: a finished training of the same tokens, settings and code is evaluated, not
repeated (reasoning_sft/training/reuse.py); anything that changes training trains."""

from __future__ import annotations

import json
import os

from conftest import compose_config
from reasoning_sft.train import run_training

SMALL = ["data=synthetic", "data.source.num_problems=160", "data.max_seq_len=256", "trainer.global_batch_size=16",
         "trainer.micro_batch_size=16", "trainer.num_epochs=1", "trainer.learning_rate=3e-3", "logger=none",
         "eval=synthetic", "eval.max_new_tokens=48"]


def _train(tmp_path, name, *overrides):
    cfg = compose_config(SMALL + [f"paths.log_dir={tmp_path}/outputs", *overrides], "train", tmp_path / name)
    return run_training(cfg)


def test_the_same_training_is_reused_and_anything_that_changes_training_trains(tmp_path):
    first = _train(tmp_path, "first", "trainer.logging_steps=1")
    assert first["train"]["training_key"] and not first["train"].get("reused_from")
    (entry,) = (tmp_path / "outputs" / "train" / "trained").iterdir()
    assert json.loads(entry.read_text())["run_dir"] == str((tmp_path / "first").resolve())

    # Another spelling of the same tokens (digit corruption at rate 0 changes no trace), another logging
    # interval and evaluation: reused, and the reused model evaluates as the trained one did.
    again = _train(tmp_path, "again", "trainer.reuse_trained=true", "ablation=digit_corruption", "ablation.rate=0.0",
                   "trainer.logging_steps=5")
    assert again["train"]["reused_from"] == str((tmp_path / "first").resolve())
    assert {k: v for k, v in again["train"].items() if k != "reused_from"} == first["train"]
    assert again["eval"] == first["eval"] and again["data"]["tokens_hash"] == first["data"]["tokens_hash"]
    assert again["data"]["training_hash"] != first["data"]["training_hash"]    # the records' metadata differ
    for f in (tmp_path / "first" / "final_model").iterdir():                  # linked, not copied
        assert os.path.samefile(f, tmp_path / "again" / "final_model" / f.name)
    assert [json.loads(line) for line in open(tmp_path / "again" / "eval_samples.jsonl")] == \
        [json.loads(line) for line in open(tmp_path / "first" / "eval_samples.jsonl")]

    # Other tokens (corrupted), another learning rate, or reuse off: trained.
    for name, overrides in (("corrupted", ["ablation=digit_corruption", "ablation.rate=1.0"]),
                            ("other_lr", ["trainer.learning_rate=1e-3"])):
        summary = _train(tmp_path, name, "trainer.reuse_trained=true", "trainer.max_steps=2", *overrides)
        assert not summary["train"].get("reused_from") and summary["train"]["steps"] == 2, name

    # A source that is gone (its final_model deleted) is not reused.
    for f in (tmp_path / "first" / "final_model").iterdir():
        f.unlink()
    (tmp_path / "first" / "final_model").rmdir()
    fresh = _train(tmp_path, "fresh", "trainer.reuse_trained=true")
    assert not fresh["train"].get("reused_from") and fresh["train"]["training_key"] == first["train"]["training_key"]

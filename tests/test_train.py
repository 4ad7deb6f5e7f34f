"""Real tiny training runs through `run_training`: loss falls, the run dir is complete, the saved
model reloads exactly, and the offline W&B run holds the logged losses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import ROOT
from reasoning_sft.errors import ConfigError
from reasoning_sft.train import run_training
from wandb_files import find_offline_run_file, read_offline_run

SMALL = ["data.source.num_problems=640", "data.max_seq_len=256", "trainer.learning_rate=3e-3",
         "trainer.global_batch_size=16", "trainer.micro_batch_size=8", "trainer.num_epochs=1",
         "trainer.logging_steps=2", "trainer.warmup_ratio=0.1"]


@pytest.mark.slow
def test_tiny_run_learns_writes_its_run_dir_and_logs_to_wandb(make_cfg, tmp_path):
    cfg = make_cfg(SMALL + ["experiment_name=unit", "logger.tags=[unit]"])
    summary = run_training(cfg)
    run_dir = tmp_path / "run"

    # Loss falls well below its start (random init: ~ln(vocab)).
    assert summary["train"]["steps"] == 40     # 640 samples / global batch 16
    assert summary["train"]["final_loss"] < 0.5 * summary["train"]["first_loss"]
    for name in ["config.yaml", "data_card.json", "trainer_state.json", "summary.json", "final_model"]:
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    card = summary["data"]
    assert card["records_loaded"] == 640 and card["tokenization"]["kept"] == 640
    assert card["training_hash"] == card["content_hash"] and len(card["content_hash"]) == 16
    assert "${" not in (run_dir / "config.yaml").read_text()          # saved resolved

    # The final model reloads in a fresh object and gives the same logits.
    tok = AutoTokenizer.from_pretrained(run_dir / "final_model")
    reloaded = AutoModelForCausalLM.from_pretrained(run_dir / "final_model")
    ids = tok("<|im_start|>user\nWhat is 12 + 34 + 56?<|im_end|>\n", return_tensors="pt")["input_ids"]
    from hydra.utils import instantiate
    fresh = instantiate(cfg.model.network, tokenizer=tok)            # same init, untrained
    with torch.no_grad():
        logits = reloaded(ids).logits
        assert not torch.allclose(logits, fresh(ids).logits, atol=1e-3)    # it was trained
        assert torch.equal(logits, AutoModelForCausalLM.from_pretrained(run_dir / "final_model")(ids).logits)

    # W&B: the offline run file holds every logged loss, the resolved config, group and name.
    logged = read_offline_run(find_offline_run_file(run_dir))
    wandb_losses = [h["train/loss"] for h in logged["history"] if "train/loss" in h]
    metric_losses = [e["loss"] for e in json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
                     if "loss" in e]
    assert wandb_losses == pytest.approx(metric_losses) and len(wandb_losses) == 21   # steps 1,2,4..40
    assert logged["run"]["group"] == "unit" and "unit" in logged["run"]["tags"]
    assert logged["config"]["trainer"]["learning_rate"] == 3e-3
    assert logged["config"]["data_card"]["training_hash"] == card["training_hash"]


@pytest.mark.slow
def test_lora_run_trains_only_the_adapter_and_saves_it(make_cfg, tmp_path):
    cfg = make_cfg(SMALL + ["peft=lora", "peft.config.r=8", "peft.config.lora_alpha=16",
                            "peft.merge_after_train=true", "logger=none", "data.source.num_problems=64"])
    summary = run_training(cfg)
    assert summary["trainable_parameters"] < 0.25 * summary["num_parameters"]
    run_dir = tmp_path / "run"
    assert (run_dir / "final_model" / "adapter_config.json").exists()
    from peft import PeftModel
    from hydra.utils import instantiate
    tok = AutoTokenizer.from_pretrained(run_dir / "final_model")
    base = instantiate(cfg.model.network, tokenizer=tok, seed=cfg.seed)
    merged_from_adapter = PeftModel.from_pretrained(base, run_dir / "final_model").merge_and_unload()
    merged_saved = AutoModelForCausalLM.from_pretrained(run_dir / "merged_model")
    ids = tok("Compute 10 + 20 + 30.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged_from_adapter(ids).logits, merged_saved(ids).logits, atol=1e-5, rtol=0)


def test_max_seq_len_too_small_for_any_sample_fails_before_the_model(make_cfg, tmp_path):
    cfg = make_cfg(["data.source.num_problems=8", "data.max_seq_len=20", "logger=none"])
    with pytest.raises(ConfigError, match=r"data\.max_seq_len=20: too small for any of the 8 samples"):
        run_training(cfg)
    assert not (tmp_path / "run" / "final_model").exists()


@pytest.mark.slow
def test_cli_demo_shape_end_to_end(tmp_path):
    """The `make demo` command, shortened: Hydra app, run dir, evaluation, printed locations."""
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.train", "experiment=demo", "data.source.num_problems=128",
         "data.format.thinking_style=r1", "eval.num_problems=10", "eval.max_new_tokens=64",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run dir:     {tmp_path}/run" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    samples = [json.loads(line) for line in open(tmp_path / "run" / "eval_samples.jsonl")]
    assert len(samples) == 10 == summary["eval"]["synthetic"]["num_problems"]
    assert summary["eval"]["synthetic"]["accuracy"] == sum(s["correct"] for s in samples) / 10
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").exists()
    assert "wandb:" in proc.stdout
    # The model card says what the weights were trained on and how they scored.
    card = (tmp_path / "run" / "final_model" / "README.md").read_text()
    assert summary["data"]["training_hash"] in card and "data.format.thinking_style=r1" in card
    acc = summary["eval"]["synthetic"]
    assert f"synthetic: accuracy {acc['accuracy']:.3f} (95% CI {acc['ci95_low']:.3f}-{acc['ci95_high']:.3f}" in card
    assert summary["hub"] is None                                   # no upload unless asked

    # The evaluate stage on the saved model reproduces the after-train evaluation exactly (greedy).
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={tmp_path}/run/final_model",
         "eval.num_problems=10", "eval.max_new_tokens=64", f"hydra.run.dir={tmp_path}/eval"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = [json.loads(line) for line in open(tmp_path / "eval" / "eval_samples.jsonl")]
    assert [s["generation"] for s in again] == [s["generation"] for s in samples]
    # ... in the format the model was trained in, saved with it (evaluate's own default style is s1)
    assert json.loads((tmp_path / "run" / "final_model" / "reasoning_sft.json").read_text()) == \
        {"thinking_style": "r1", "system_prompt": None, "max_seq_len": 256}
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert evaluated["prompt"]["from_model"] and evaluated["prompt"]["thinking_style"] == "r1"
    assert {s["thinking_style"] for s in again} == {"r1"}
    assert [s["correct"] for s in again] == [s["correct"] for s in samples]
    # Re-grading the saved generations (no field named) reproduces every verdict.
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.grade", f"input={tmp_path}/eval/eval_samples.jsonl",
         "fields.verdict=correct", f"hydra.run.dir={tmp_path}/grade"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    regraded = json.loads((tmp_path / "grade" / "summary.json").read_text())["grade"]
    assert regraded["agreement"]["agree"] == 1.0 and regraded["thinking_styles"] == {"r1": 10}
    assert regraded["accuracy"] == evaluated["eval"]["synthetic"]["accuracy"]
    # W&B (offline): the evaluation metrics and a table of the samples
    logged = read_offline_run(find_offline_run_file(tmp_path / "eval"))
    accuracy = [h["eval/synthetic/accuracy"] for h in logged["history"] if "eval/synthetic/accuracy" in h]
    assert accuracy == [json.loads((tmp_path / "eval" / "summary.json").read_text())["eval"]["synthetic"]["accuracy"]]
    (table,) = [h for h in logged["history"] if "eval/samples/_type" in h]
    assert table["eval/samples/_type"] == "table-file" and table["eval/samples/nrows"] == 10
    table_file = find_offline_run_file(tmp_path / "eval").parent / "files" / table["eval/samples/path"]
    data = json.loads(table_file.read_text())
    assert [row[4] for row in data["data"]] == [s["generation"] for s in again]    # the generations
    assert logged["run"]["job_type"] == "evaluate"


@pytest.mark.slow
def test_without_wandb_credentials_train_and_evaluate_log_offline(tmp_path):
    """No WANDB_MODE, no API key, no ~/.netrc: the run logs offline and says so in one line."""
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SILENT")}
    env["HOME"] = str(tmp_path / "home")       # no ~/.netrc from `wandb login`
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.train", "data.source.num_problems=32", "trainer.max_steps=2",
         "eval=synthetic", "eval.num_problems=4", "eval.max_new_tokens=8", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notices = [line for line in proc.stderr.splitlines() if line.startswith("W&B: no API key")]
    assert len(notices) == 1 and "wandb sync" in notices[0]
    assert find_offline_run_file(tmp_path / "run").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.evaluate", f"model_path={tmp_path}/run/final_model",
         "eval.num_problems=4", "eval.max_new_tokens=8", f"hydra.run.dir={tmp_path}/eval"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert find_offline_run_file(tmp_path / "eval").is_file()


def test_push_to_hub_needs_a_repo_before_training(make_cfg):
    with pytest.raises(ConfigError, match="trainer.push_to_hub=true: set trainer.hub_model_id"):
        run_training(make_cfg(["trainer.push_to_hub=true"]))


@pytest.mark.slow
def test_ctrl_c_ends_in_one_line_and_a_status(tmp_path):
    import signal
    from conftest import ProcessOutput
    proc = subprocess.Popen(
        [sys.executable, "-m", "reasoning_sft.train", "data.source.num_problems=2000", "trainer.max_steps=400",
         "trainer.logging_steps=1", "logger=none", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ProcessOutput(proc)
    output.wait_for(r"^step [1-9]\d*/")   # inside the training loop: an event, not a delay
    proc.send_signal(signal.SIGINT)
    err = output.text(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"interrupted: {tmp_path}/run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"


def test_refused_commands_leave_no_folder_and_a_failed_run_says_so_in_its_name(tmp_path):
    """Issue 30: a command refused for its config or input leaves nothing under the outputs folder (not
    even the empty folders Hydra made for it); a run that fails after it started keeps its dir, named
    `<time>-failed`, with summary.json saying so."""
    outputs = tmp_path / "outputs"
    refused = [("train", "trainer.learning_rate=-1"), ("prepare", "data=r1_traces", "data.source.path=/nope.jsonl"),
               ("evaluate", "model_path=/nope"), ("grade", "input=/nope.jsonl"),
               ("train", "data=r1_traces", "data.source.path=/nope.jsonl")]
    for stage, *args in refused:
        proc = subprocess.run([sys.executable, "-m", f"reasoning_sft.{stage}", *args, f"paths.log_dir={outputs}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(("config error", "data error"))
        assert not outputs.exists() or not any(outputs.iterdir()), (stage, sorted(outputs.rglob("*")))
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "data.source.num_problems=8", "data.max_seq_len=20",
                           "logger=none", f"paths.log_dir={outputs}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (failed,) = (outputs / "train" / "runs" / "default").iterdir()
    assert failed.name.endswith("-failed") and f"failed run dir: {failed}" in proc.stderr
    assert json.loads((failed / "summary.json").read_text())["status"] == "failed"
    assert "too small for any of the 8 samples" in proc.stderr.strip().splitlines()[-1]

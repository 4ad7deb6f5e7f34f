"""The multi-process path users run: `python -m reasoning_sft.train trainer.nproc_per_node=2
deepspeed=zero3` starts two real DeepSpeed workers (gloo on CPU). Their rank reports, losses and
saved models are checked against a one-process run; then kill / resume and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from conftest import ROOT
from reasoning_sft.train import resume_checkpoint
from reasoning_sft.training.checkpoints import COMPLETE, complete_checkpoints, set_aside_incomplete
from reasoning_sft.errors import ConfigError
from reasoning_sft.training.launch import slurm_rank_env
from reasoning_sft.training.models import load_pretrained_tokenizer
from reasoning_sft.training.recipe import PROBE_TEXT
from reasoning_sft.train import run_training
from wandb_files import read_offline_run

# 64 synthetic problems, 4 optimizer steps of global batch 4.
BASE = ["data.source.num_problems=64", "trainer.max_steps=4", "trainer.global_batch_size=4",
        "trainer.logging_steps=1", "trainer.learning_rate=1e-3", "trainer.warmup_ratio=0"]


# A 2-rank ZeRO-3 run of 24 steps: global batch 4 = micro 1 x accumulation 2 x 2 ranks.
ZERO3_LONG = ["data.source.num_problems=512", "trainer.max_steps=24", "trainer.global_batch_size=4",
              "trainer.micro_batch_size=1", "trainer.nproc_per_node=2", "deepspeed=zero3", "trainer.logging_steps=1",
              "trainer.learning_rate=1e-3", "trainer.warmup_ratio=0", "trainer.save_final_model=false", "logger=none"]
ZERO3_LONG_ONE_RANK = [a for a in ZERO3_LONG if not a.startswith(("trainer.micro", "trainer.nproc", "deepspeed"))] \
    + ["trainer.micro_batch_size=2"]


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory):
    """One uninterrupted ZERO3_LONG run (its final model gathered and saved), shared: the partition test
    reads its ranks and model, the preemption test its per-step losses."""
    from reasoning_sft.training.launch import SHM_DIR
    run_dir = tmp_path_factory.mktemp("zero3") / "run"
    before = set(SHM_DIR.glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*"))
    summary = run_cli_ok(run_dir, ZERO3_LONG + ["trainer.save_final_model=true"])
    # DeepSpeed's CPU allreduce buffers (69 MB a rank, never unlinked by DeepSpeed) are gone with the run
    assert set(SHM_DIR.glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*")) <= before
    return run_dir, summary


def test_release_shared_memory_removes_only_that_runs_buffers(tmp_path, monkeypatch):
    from reasoning_sft.training import launch
    monkeypatch.setattr(launch, "SHM_DIR", tmp_path)
    uid = os.getuid()
    names = [f"deepspeed_allreduce_buffer_{uid}_127.0.0.1_29500_{r}" for r in (0, 1)] + \
        [f"deepspeed_allreduce_buffer_{uid}_127.0.0.1_29501_0", f"deepspeed_allreduce_buffer_{uid + 1}_127.0.0.1_29500_0",
         "psm_other"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert launch.release_shared_memory(29500, rank=1) == 1
    assert launch.release_shared_memory(29500) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def train_cli(run_dir: Path, overrides: list[str], **popen) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "reasoning_sft.train", *overrides, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def run_cli_ok(run_dir: Path, overrides: list[str], output: list | None = None) -> dict:
    return finish_ok(train_cli(run_dir, overrides), run_dir, output)


def finish_ok(proc: subprocess.Popen, run_dir: Path, output: list | None = None) -> dict:
    """Wait for a started run (tests start an independent reference run first and do other work meanwhile:
    the results do not depend on timing, and the suite's minutes do) and return its summary."""
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    if output is not None:
        output.append(out)
    return json.loads((run_dir / "summary.json").read_text())


def losses(run_dir: Path) -> dict[int, float]:
    rows = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def probe_logits(model, run_dir: Path) -> torch.Tensor:
    tok = load_pretrained_tokenizer(str(run_dir / "final_model"))
    with torch.no_grad():
        return model(input_ids=tok(PROBE_TEXT, return_tensors="pt").input_ids).logits.float()


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_zero3_two_ranks_partition_split_the_data_and_match_one_rank(make_cfg, zero3_run):
    two_dir, two = zero3_run
    one = run_training(make_cfg(ZERO3_LONG_ONE_RANK))
    one_dir = Path(one["run_dir"])

    # The global batch is micro 1 x accumulation 2 x world 2.
    assert two["train"]["world_size"] == 2 and two["train"]["gradient_accumulation"] == 2

    # ZeRO-3 really partitions: each rank holds half of every parameter (ZeRO pads odd sizes by one).
    ranks = [json.loads((two_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    full = ranks[0]["parameters_full"]
    assert full == one["num_parameters"] == two["num_parameters"]
    for r in ranks:
        assert r["world_size"] == 2
        assert full / 2 <= r["parameters_local"] <= full / 2 + 64
        # Adam's two moments, fp32, over this rank's half only.
        assert r["optimizer_state_bytes"] == 2 * 4 * r["parameters_local"]

    # Disjoint shares that together are exactly what the one-process run trained on.
    seen = [set(r["samples_seen"]) for r in ranks]
    assert len(ranks[0]["samples_seen"]) == len(ranks[1]["samples_seen"]) == 24 * 2   # 24 steps x 2 micro
    assert not seen[0] & seen[1]
    one_seen = json.loads((one_dir / "ranks" / "rank0.json").read_text())["samples_seen"]
    assert seen[0] | seen[1] == set(one_seen)

    # Same loss curve as 1 rank x micro batch 2 (token-weighted across ranks, as within one batch).
    l1, l2 = losses(one_dir), losses(two_dir)
    assert sorted(l1) == sorted(l2) == list(range(1, 25))
    assert l2[24] < l2[1]
    for step in l1:
        assert l2[step] == pytest.approx(l1[step], abs=2e-4), step

    # The saved model is the full gathered model: in this fresh process it gives the trained logits.
    saved = AutoModelForCausalLM.from_pretrained(str(two_dir / "final_model"))
    assert sum(p.numel() for p in saved.parameters()) == full
    trained = torch.load(two_dir / "final_model_probe_logits.pt")
    assert torch.allclose(probe_logits(saved, two_dir), trained, atol=1e-5)
    assert two["save_check"]["max_abs_logit_diff"] < 1e-5
    # ... and it is trained: not the initial weights (the first loss came from those).
    assert losses(two_dir)[24] < losses(two_dir)[1]


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_lora_under_zero3_saves_an_adapter_that_loads_and_merges(tmp_path):
    from peft import PeftModel
    from reasoning_sft.training.models import build_tiny_model

    run_dir = tmp_path / "lora"
    summary = run_cli_ok(run_dir, BASE + ["trainer.micro_batch_size=1", "trainer.nproc_per_node=2",
                                          "deepspeed=zero3", "peft=lora", "peft.config.r=8", "logger=none"])
    assert summary["trainable_parameters"] < summary["num_parameters"] / 2
    assert (run_dir / "final_model" / "adapter_model.safetensors").is_file()
    assert not (run_dir / "final_model" / "model.safetensors").exists()   # an adapter, not a full copy

    cfg = OmegaConf.load(run_dir / "config.yaml")
    tok = load_pretrained_tokenizer(str(run_dir / "final_model"))
    net = {k: v for k, v in cfg.model.network.items() if k != "_target_"}
    base = build_tiny_model(tok, seed=cfg.seed, **net)
    base_logits = probe_logits(base, run_dir)
    merged = PeftModel.from_pretrained(base, str(run_dir / "final_model")).merge_and_unload()
    merged_logits = probe_logits(merged, run_dir)
    trained = torch.load(run_dir / "final_model_probe_logits.pt")
    assert torch.allclose(merged_logits, trained, atol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-3     # the adapter changed the model


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_more_processes_than_samples_is_a_clear_error(tmp_path):
    proc = train_cli(tmp_path / "few", ["data.source.num_problems=1", "trainer.global_batch_size=2",
                                        "trainer.nproc_per_node=2", "trainer.launcher=torchrun", "logger=none"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out[-3000:]
    assert "config error: trainer.nproc_per_node x nnodes = 2 processes but only 1 training samples" in out


RESUME_STEPS = 60
RESUME = ["data.source.num_problems=2000", f"trainer.max_steps={RESUME_STEPS}", "trainer.global_batch_size=8",
          "trainer.micro_batch_size=8", "trainer.logging_steps=1", "trainer.save_steps=10",
          "trainer.learning_rate=1e-3", "trainer.save_final_model=false"]


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped_with_the_same_losses(tmp_path):
    reference = tmp_path / "reference"
    started = train_cli(reference, RESUME + ["logger=none"])

    killed = tmp_path / "killed"
    proc = train_cli(killed, RESUME + ["logger=wandb"])
    deadline = time.time() + 300
    while not any(int(p.name.split("-")[1]) >= 20 for p in complete_checkpoints(killed / "checkpoints")):
        assert proc.poll() is None and time.time() < deadline, "run ended before its 2nd checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    last = complete_checkpoints(killed / "checkpoints")[-1]
    stopped_at = int(last.name.split("-")[1])
    assert stopped_at < RESUME_STEPS and not (killed / "summary.json").exists()
    first_wandb = {p.name for p in (killed / "wandb").glob("offline-run-*")}
    uninterrupted = finish_ok(started, reference)

    said = []
    summary = run_cli_ok(killed, RESUME + ["logger=wandb", "trainer.resume=auto"], said)
    assert summary["train"]["resumed_from"] == str(last)
    assert f"resuming from {last} (step {stopped_at}," in said[0] and "missing keys" not in said[0]
    assert summary["train"]["steps"] == RESUME_STEPS
    # The summary covers the whole run, not only the resumed part.
    assert summary["train"]["mean_train_loss"] == pytest.approx(uninterrupted["train"]["mean_train_loss"], abs=1e-4)
    assert summary["train"]["train_seconds"] > summary["train"]["this_session_seconds"]
    ref, resumed = losses(reference), losses(killed)
    # trainer_state.json holds the whole curve: the checkpoint's history, then the resumed steps.
    assert sorted(resumed) == list(range(1, RESUME_STEPS + 1))
    for step in range(stopped_at + 1, RESUME_STEPS + 1):
        assert resumed[step] == pytest.approx(ref[step], abs=1e-5), step

    # The W&B run is continued under the same id, not started again.
    # (the killed run's file may be cut short: its id is in its dir name, offline-run-<time>-<id>)
    runs = sorted((killed / "wandb").glob("offline-run-*"))
    run_id = (killed / "wandb_run_id").read_text().strip()
    assert len(runs) == 2 and len(first_wandb) == 1
    assert {r.name.rsplit("-", 1)[1] for r in runs} == {run_id}
    second = read_offline_run(next((killed / "wandb" / (set(p.name for p in runs) - first_wandb).pop())
                                   .glob("run-*.wandb")))
    assert second["run"]["id"] == run_id
    logged = [h["train/global_step"] for h in second["history"] if "train/loss" in h]
    assert logged[0] == stopped_at + 1 and logged[-1] == RESUME_STEPS


def preempt(proc: subprocess.Popen, run_dir: Path, group: bool):
    """SIGTERM a training run once it says it has trained a step (an event: its progress line); it must
    exit 0, preempted, with exactly one complete checkpoint at the step it stopped. -> (output, summary, [ckpt])"""
    from conftest import ProcessOutput
    output = ProcessOutput(proc)
    output.wait_for(r"^step [1-9]\d*/")
    if group:
        os.killpg(proc.pid, signal.SIGTERM)      # the whole process group, as SLURM signals a job step
    else:
        proc.send_signal(signal.SIGTERM)
    out = output.text(timeout=180)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "preempted"
    done = complete_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in done] == [f"checkpoint-{summary['train']['steps']}"]
    return out, summary, done


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "preempted"
    proc = train_cli(run_dir, RESUME + ["trainer.save_steps=0", "logger=none", "trainer.max_steps=100000"])
    out, summary, done = preempt(proc, run_dir, group=True)
    assert (done[0] / "optimizer.pt").is_file() and (done[0] / "trainer_state.json").is_file()
    assert "trainer.resume=unfinished" in out


def test_incomplete_checkpoints_are_never_resumed_from(make_cfg, tmp_path):
    ckpt = tmp_path / "run" / "checkpoints"
    for step, complete in [(10, True), (20, True), (30, False)]:   # 30: killed while writing
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (ckpt / f"checkpoint-{step}" / COMPLETE).write_text("{}")
    cfg = make_cfg(["trainer.resume=auto"])
    assert resume_checkpoint(cfg, tmp_path / "run") == ckpt / "checkpoint-20"
    assert (ckpt / "incomplete-checkpoint-30").is_dir() and not (ckpt / "checkpoint-30").exists()
    assert set_aside_incomplete(ckpt) == []
    with pytest.raises(ConfigError, match="trainer.resume='.*checkpoint-30'.*not a complete checkpoint"):
        resume_checkpoint(make_cfg([f"trainer.resume={ckpt}/checkpoint-30"]), tmp_path / "run")


def test_resume_with_a_config_that_trains_differently_is_refused(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    OmegaConf.save(make_cfg([]), run_dir / "config.yaml", resolve=True)
    # What does not change training may change.
    resume_checkpoint(make_cfg(["trainer.resume=auto", "trainer.save_steps=5", "trainer.logging_steps=3"]), run_dir)
    with pytest.raises(ConfigError, match=r"trainer.learning_rate: 1e-05 -> 0.001"):
        resume_checkpoint(make_cfg(["trainer.resume=auto", "trainer.learning_rate=1e-3"]), run_dir)
    with pytest.raises(ConfigError, match=r"data.source.num_problems"):
        resume_checkpoint(make_cfg(["trainer.resume=auto", "data.source.num_problems=7"]), run_dir)


def test_missing_hostfile_and_multinode_without_one_are_config_errors(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.hostfile='/nope/hosts': no such file"):
        run_training(make_cfg(["trainer.hostfile=/nope/hosts"]))
    with pytest.raises(ConfigError, match=r"trainer.nnodes=2: a multi-node run needs trainer.hostfile"):
        run_training(make_cfg(["trainer.nnodes=2", "trainer.global_batch_size=2"]))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_worker_command_for_each_launcher(make_cfg, tmp_path):
    from reasoning_sft.training.launch import worker_command
    hosts = tmp_path / "hostfile"
    hosts.write_text("node1 slots=8\nnode2 slots=8\n")
    cmd = worker_command(make_cfg(["deepspeed=zero3", "trainer.nproc_per_node=8", "trainer.nnodes=2",
                                   f"trainer.hostfile={hosts}", "trainer.master_port=29600"]), tmp_path)
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    for flag, value in [("--num_gpus", "8"), ("--num_nodes", "2"), ("--hostfile", str(hosts)),
                        ("--master_port", "29600"), ("--module", "reasoning_sft.train_worker")]:
        assert cmd[cmd.index(flag) + 1] == value
    assert "--no_local_rank" in cmd and cmd[-1] == str(tmp_path)
    cmd = worker_command(make_cfg(["trainer.nproc_per_node=2", "trainer.global_batch_size=2"]), tmp_path)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[cmd.index("--nproc_per_node") + 1] == "2"


def test_slurm_tasks_become_torch_ranks(make_cfg, monkeypatch):
    """SLURM's variables of one task (as hydra-submitit-launcher starts it) read by submitit: the rank,
    the first host of a bracketed node list, and a port every task of the job agrees on."""
    env = {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "8",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[003-004]",
           "SLURM_JOB_ID": "123456"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)   # a plain srun task: submitit's launcher sets it
    mapped = slurm_rank_env()
    port = mapped.pop("MASTER_PORT")
    assert mapped == {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8",
                      "MASTER_ADDR": "gpu003"}
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert slurm_rank_env()["MASTER_PORT"] == port and 20000 <= int(port) <= 60000   # the same on rank 0
    assert slurm_rank_env(29500)["MASTER_PORT"] == "29500"                          # trainer.master_port wins
    monkeypatch.setenv("SLURM_JOB_NODELIST", "x[10-12],y")
    assert slurm_rank_env()["MASTER_ADDR"] == "x10"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert slurm_rank_env() == {}
    assert "SUBMITIT_EXECUTOR" not in os.environ   # read with submitit's mark, left as found: still a plain srun task
    for key in env:
        monkeypatch.delenv(key)
    # A process that is not one of the SLURM tasks the config asks for is told so.
    with pytest.raises(ConfigError, match="trainer.launcher='slurm': this process is not one of 2 SLURM tasks"):
        run_training(make_cfg(["trainer.launcher=slurm", "trainer.nproc_per_node=2", "trainer.global_batch_size=2"]))


def test_slurm_launcher_takes_nodes_and_tasks_from_the_trainer():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "experiment=s1k_qwen32b",
                                          "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert launcher.partition == "gpu" and launcher.timeout_min == 1440


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_each_multirun_job_launches_its_own_workers(tmp_path):
    """`-m` with two processes per job (torchrun, DDP over gloo): every job gets its own workers,
    which write into that job's dir."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "-m", "data.source.num_problems=32",
                           "trainer.max_steps=2", "trainer.global_batch_size=2", "trainer.nproc_per_node=2",
                           "trainer.learning_rate=1e-3,3e-3", "logger=none", "trainer.save_final_model=false",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for job, lr in (("0", 1e-3), ("1", 3e-3)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["train"]["world_size"] == 2
        assert OmegaConf.load(sweep / job / "config.yaml").trainer.learning_rate == lr
        ranks = [json.loads((sweep / job / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert not set(ranks[0]["samples_seen"]) & set(ranks[1]["samples_seen"])
    assert json.loads((sweep / "sweep_status.json").read_text())["finished"] == 2


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_sigterm_to_a_two_process_run_checkpoints_every_rank_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "preempted2"
    proc = train_cli(run_dir, RESUME + ["trainer.save_steps=0", "logger=none", "trainer.max_steps=100000",
                                        "trainer.nproc_per_node=2", "trainer.launcher=torchrun",
                                        "trainer.micro_batch_size=4"])
    # SIGTERM to the launching process only, as `kill <pid>` does
    out, summary, done = preempt(proc, run_dir, group=False)
    assert summary["train"]["steps"] > 0
    # both ranks stopped at the same step (the save is collective) and reported
    ranks = [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["samples_seen"]) == len(ranks[1]["samples_seen"]) == 4 * summary["train"]["steps"]


def test_another_runs_checkpoint_is_trusted_only_when_asked_and_checked_against_its_own_run(make_cfg, tmp_path):
    """A checkpoint outside the run dir is unpickled on resume: refused unless trainer.resume_trust=true;
    and then its own run's config decides what may differ (another learning rate is refused)."""
    other = tmp_path / "other"
    (other / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (other / "checkpoints" / "checkpoint-10" / COMPLETE).write_text("{}")
    OmegaConf.save(make_cfg([]), other / "config.yaml", resolve=True)
    ckpt = other / "checkpoints" / "checkpoint-10"
    with pytest.raises(ConfigError, match="outside this run dir.*trainer.resume_trust=true"):
        resume_checkpoint(make_cfg([f"trainer.resume={ckpt}"]), tmp_path / "run")
    assert resume_checkpoint(make_cfg([f"trainer.resume={ckpt}", "trainer.resume_trust=true"]), tmp_path / "run") == ckpt
    with pytest.raises(ConfigError, match=r"trainer.learning_rate: 1e-05 -> 0.001"):
        resume_checkpoint(make_cfg([f"trainer.resume={ckpt}", "trainer.resume_trust=true",
                                    "trainer.learning_rate=1e-3"]), tmp_path / "run")


def test_resume_on_changed_data_is_refused(tmp_path):
    """The data file changed between the kill and the resume: the data card's hash says so."""
    from reasoning_sft.training.checkpoints import check_resumed_data
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    (tmp_path / "run" / "data_card.json").write_text(json.dumps({"training_hash": "abc"}))
    check_resumed_data(ckpt, "abc")
    with pytest.raises(ConfigError, match="the training data changed since the checkpoint was written"):
        check_resumed_data(ckpt, "def")


def test_rotation_never_leaves_zero_complete_checkpoints(tmp_path):
    from reasoning_sft.training.checkpoints import rotate
    ckpt = tmp_path / "checkpoints"
    for step in (10, 20):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        (ckpt / f"checkpoint-{step}" / COMPLETE).write_text("{}")
    (ckpt / "checkpoint-30").mkdir()            # being written: not complete, so nothing is rotated for it
    assert rotate(ckpt, 1) == [ckpt / "checkpoint-10"]
    assert complete_checkpoints(ckpt) == [ckpt / "checkpoint-20"]
    assert rotate(ckpt, 1) == [] and complete_checkpoints(ckpt) == [ckpt / "checkpoint-20"]
    # Two crashes at the same step: both partial writes are set aside, resume goes on.
    assert set_aside_incomplete(ckpt) == ["checkpoint-30"]
    (ckpt / "checkpoint-30").mkdir()
    assert set_aside_incomplete(ckpt) == ["checkpoint-30"]
    assert {p.name for p in ckpt.iterdir()} == {"checkpoint-20", "incomplete-checkpoint-30", "incomplete-checkpoint-30.2"}


def test_rotation_leaves_a_preempted_runs_checkpoint_until_the_run_has_passed_it(tmp_path):
    """A run that started over (trainer.resume=never) in the dir of a run preempted at step 20: its
    own checkpoints 2 and 4 rotate among themselves; checkpoint-20 stays until this run is past step 20."""
    from reasoning_sft.training.checkpoints import rotate
    ckpt = tmp_path / "checkpoints"
    for step in (20, 2, 4):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        (ckpt / f"checkpoint-{step}" / COMPLETE).write_text("{}")
    assert rotate(ckpt, 1, step=2) == []
    assert rotate(ckpt, 1, step=4) == [ckpt / "checkpoint-2"]
    assert complete_checkpoints(ckpt) == [ckpt / "checkpoint-4", ckpt / "checkpoint-20"]
    (ckpt / "checkpoint-22").mkdir()
    (ckpt / "checkpoint-22" / COMPLETE).write_text("{}")
    assert rotate(ckpt, 1, step=22) == [ckpt / "checkpoint-4", ckpt / "checkpoint-20"]


def test_the_default_resume_continues_an_unfinished_run_dir_and_nothing_else(make_cfg, tmp_path, monkeypatch):
    from reasoning_sft.train import resume_checkpoint
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    cfg = make_cfg([])
    run_dir = Path(cfg.paths.output_dir)
    assert cfg.trainer.resume == "unfinished" and resume_checkpoint(cfg, run_dir) is None      # a fresh dir
    (run_dir / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-4" / COMPLETE).write_text("{}")
    assert resume_checkpoint(cfg, run_dir) == run_dir / "checkpoints" / "checkpoint-4"        # killed: no summary
    (run_dir / "summary.json").write_text(json.dumps({"stage": "train", "status": "preempted", "train": {"steps": 4}}))
    assert resume_checkpoint(cfg, run_dir) == run_dir / "checkpoints" / "checkpoint-4"
    (run_dir / "summary.json").write_text(json.dumps({"stage": "train", "status": "finished"}))
    assert resume_checkpoint(cfg, run_dir) is None                                             # finished: fresh
    never = make_cfg(["trainer.resume=never"])
    (run_dir / "summary.json").unlink()
    assert resume_checkpoint(never, Path(never.paths.output_dir)) is None


@pytest.mark.slow
def test_resume_auto_on_a_finished_run_leaves_it_untouched(tmp_path):
    args = ["data.source.num_problems=32", "trainer.max_steps=2", "logger=none"]
    summary = run_cli_ok(tmp_path / "run", args)
    weights = tmp_path / "run" / "final_model" / "model.safetensors"
    before = (weights.stat().st_mtime, (tmp_path / "run" / "summary.json").read_text())
    again = run_cli_ok(tmp_path / "run", args + ["trainer.resume=auto"])
    assert again["train"]["steps"] == summary["train"]["steps"] == 2
    assert (weights.stat().st_mtime, (tmp_path / "run" / "summary.json").read_text()) == before




def _alive_workers(run_dir: Path) -> list[int]:
    import psutil
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "reasoning_sft.train_worker" in cmd and str(run_dir) in cmd:
            found.append(p.pid)
    return found


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_sigterm_to_a_zero3_run_preempts_and_resume_matches_an_uninterrupted_run(tmp_path, zero3_run):
    """SLURM's preemption of `deepspeed=zero3 trainer.nproc_per_node=2`: SIGTERM to the launching
    command reaches the two training ranks only (not DeepSpeed's launcher processes), both checkpoint,
    the command exits 0 `preempted`; the same command with resume=auto ends on the reference losses."""
    reference, _ = zero3_run
    run_dir = tmp_path / "preempted"
    proc = train_cli(run_dir, ZERO3_LONG + ["trainer.save_steps=4", "trainer.save_total_limit=1"])
    deadline = time.time() + 300
    while not complete_checkpoints(run_dir / "checkpoints"):   # training is under way
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)                          # to the launching process only
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "preempted" and 0 < summary["train"]["steps"] < 24, out[-2000:]
    assert [p.name for p in complete_checkpoints(run_dir / "checkpoints")] == \
        [f"checkpoint-{summary['train']['steps']}"]             # rotated to one, never to none
    resumed = run_cli_ok(run_dir, ZERO3_LONG + ["trainer.save_steps=4", "trainer.save_total_limit=1",
                                                "trainer.resume=auto"])
    assert resumed["train"]["steps"] == 24
    ref, got = losses(reference), losses(run_dir)
    for step in range(summary["train"]["steps"] + 1, 25):
        assert got[step] == pytest.approx(ref[step], abs=1e-5), step


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_kill_9_of_the_launching_command_leaves_no_worker_and_a_second_command_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = ZERO3_LONG[:1] + ["trainer.max_steps=100000"] + ZERO3_LONG[2:]
    proc = train_cli(run_dir, args)
    deadline = time.time() + 300
    while len(_alive_workers(run_dir)) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    # A second command in the same run dir is refused at once, naming the holder; the first goes on.
    second = train_cli(run_dir, args)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 2 and f"{run_dir} is in use by" in out and f"pid {proc.pid}" in out
    assert proc.poll() is None
    proc.kill()                                   # SIGKILL to the launching process alone
    proc.wait()
    deadline = time.time() + 30
    while _alive_workers(run_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert _alive_workers(run_dir) == []
    # Its lock is stale now: the next command in the run dir takes it over.
    third = run_cli_ok(run_dir, ["data.source.num_problems=64", "trainer.max_steps=2", "logger=none",
                                 "trainer.save_final_model=false"])   # any command: one process is enough
    assert third["status"] == "finished"


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_ctrl_c_of_the_launching_command_leaves_no_worker(tmp_path):
    run_dir = tmp_path / "run"
    proc = train_cli(run_dir, ZERO3_LONG[:1] + ["trainer.max_steps=100000"] + ZERO3_LONG[2:])
    deadline = time.time() + 300
    while len(_alive_workers(run_dir)) < 2:       # events, not time: both ranks exist
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)               # Ctrl-C reaches the launching command alone here
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in out.split("interrupted:")[-1], out[-2000:]
    assert _alive_workers(run_dir) == []          # the command returned only once its whole group was gone
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert not (run_dir / ".lock").exists()       # released: the next command may use the run dir


@pytest.mark.slow
def test_a_second_command_in_a_run_dir_in_use_is_refused_and_the_first_finishes(tmp_path):
    """The first command trains until it is told to stop (SIGTERM, after the second was refused), so
    no machine is too slow for the second to find it running: each step waits on an event."""
    run_dir = tmp_path / "run"
    args = ["data.source.num_problems=256", "trainer.max_steps=100000", "trainer.logging_steps=1", "logger=none",
            "trainer.save_steps=2", "trainer.save_total_limit=1", "eval=none"]
    first = train_cli(run_dir, args)
    deadline = time.time() + 300
    while not (run_dir / ".lock").exists():
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.1)
    second = train_cli(run_dir, args + ["trainer.learning_rate=1e-4"])
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 2 and "is in use by" in out and f"pid {first.pid}" in out, out[-2000:]
    while not complete_checkpoints(run_dir / "checkpoints"):   # the first trains on, undisturbed
        assert first.poll() is None and time.time() < deadline + 300
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["train"]["steps"] >= 2
    from omegaconf import OmegaConf
    assert OmegaConf.load(run_dir / "config.yaml").trainer.learning_rate != 1e-4   # the second wrote nothing
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
@pytest.mark.ranks   # several ranks: `make test` runs these one at a time
def test_ulysses_sequence_parallel_on_two_cpu_ranks_matches_one(tmp_path):
    """DeepSpeed Ulysses runs on CPU here (gloo's all_to_all_single): each sequence split over 2 ranks
    gives the losses of one rank holding it whole."""
    sp = ["data.source.num_problems=64", "trainer.max_steps=4", "trainer.global_batch_size=1", "trainer.logging_steps=1",
          "trainer.learning_rate=1e-3", "trainer.warmup_ratio=0", "data.max_seq_len=256", "deepspeed=zero3",
          "logger=none", "eval=none"]
    started = train_cli(tmp_path / "sp1", sp)
    split = run_cli_ok(tmp_path / "sp2", sp + ["trainer.nproc_per_node=2", "trainer.sequence_parallel_size=2"])
    whole = finish_ok(started, tmp_path / "sp1")
    l1, l2 = losses(tmp_path / "sp1"), losses(tmp_path / "sp2")
    assert sorted(l2) == [1, 2, 3, 4]
    for step in l1:
        assert l2[step] == pytest.approx(l1[step], abs=1e-5), step
    ranks = [json.loads((tmp_path / "sp2" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # one data-parallel replica: both ranks train on the same 4 samples, each on half of every sequence
    assert ranks[0]["samples_seen"] == ranks[1]["samples_seen"] == \
        json.loads((tmp_path / "sp1" / "ranks" / "rank0.json").read_text())["samples_seen"]
    assert split["status"] == whole["status"] == "finished"
    assert (split["train"]["data_parallel_size"], split["train"]["sequence_parallel_size"]) == (1, 2)
    assert split["train"]["tokens_seen"] == whole["train"]["tokens_seen"]      # real tokens, counted once
    with pytest.raises(ConfigError, match="trainer.packing=True: expected false with trainer.sequence_parallel_size"):
        from reasoning_sft.config import validate_train_config
        from conftest import compose_config
        validate_train_config(compose_config(sp + ["trainer.nproc_per_node=2", "trainer.sequence_parallel_size=2",
                                                   "trainer.packing=true"]))

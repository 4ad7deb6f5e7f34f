"""Training stage: `python -m reasoning_sft.train [experiment=NAME] [overrides]`.

Validates the whole config (and the evaluation to follow) before any work, resumes or refuses a run
dir, launches the ranks when there are several, and runs the training recipe (recipe.py: data ->
model -> fit -> save -> evaluate -> summary.json). The run dir holds config.yaml (resolved),
data_card.json, trainer_state.json, final_model/, eval_samples.jsonl, summary.json and wandb/.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

# Only the ground floor at import: a config mistake is answered before torch and transformers load.
from reasoning_sft.cli import run_cli, run_context
from reasoning_sft.config import check_hardware, settle_generation_budget, validate_train_config
from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.rundir import RunContext, lock_run_dir, open_run_dir
from reasoning_sft.schema import raise_errors


def run_training(cfg: DictConfig) -> dict:
    """The whole stage for an already composed config; returns what it writes to summary.json.
    With more than one process it freezes the config into the run dir and launches the workers."""
    if cfg.eval.after_train:   # a derived value, settled before the checks (and frozen with the run dir)
        settle_generation_budget(cfg, cfg.data.max_seq_len)
    g = validate_train_config(cfg)
    from reasoning_sft.data.loaders import source_problems
    raise_errors(source_problems(g.data.source))   # a missing local file: before any run dir, not in a worker
    from reasoning_sft.training.checkpoints import seconds_trained
    from reasoning_sft.training.launch import (check_launch_config, launch_workers, launcher_name, needs_launch, rank,
                                               release_shared_memory, rendezvous_address, single_process_env,
                                               slurm_rank_env)
    from reasoning_sft.training.model_card import check_push
    if g.eval.after_train:   # before training: a bad task must not cost a training run its results
        from reasoning_sft.data.synthetic import trained_shape
        from reasoning_sft.evaluation.evaluator import Evaluator
        Evaluator(g.eval, g.data.format.thinking_style, g.data.format.system_prompt, g.seed,
                  trained_shape(g.data.source)).check()
    check_push(g.trainer)
    check_hardware(g.trainer)
    check_launch_config(cfg)
    if launcher_name(cfg) == "slurm":
        ranks = slurm_rank_env(cfg.trainer.master_port)
        if "MASTER_ADDR" in ranks:   # the first node's name, or SLURM's NodeAddr for it where it does not resolve
            ranks["MASTER_ADDR"] = rendezvous_address(ranks["MASTER_ADDR"])
        os.environ.update(ranks)
    run_dir = Path(cfg.paths.output_dir)
    lock_run_dir(run_dir)   # before anything reads or sets aside its checkpoints
    finished = finished_summary(run_dir) if cfg.trainer.resume == "auto" else None
    if finished is not None:   # nothing to resume: training again would overwrite final_model/
        print(f"trainer.resume=auto: {run_dir} already finished training; nothing to do "
              f"(its summary.json and final_model/ are left as they are)", file=sys.stderr)
        return finished
    resume_from = resume_checkpoint(cfg, run_dir, set_aside=rank() == 0)
    if resume_from is not None:
        cfg.trainer.resume = str(resume_from)   # the frozen config names the checkpoint
        if rank() == 0:
            print(f"resuming from {resume_from} (step {resume_from.name.split('-')[-1]}, "
                  f"{seconds_trained(resume_from):.0f}s trained before)", file=sys.stderr)
    context = run_context()
    reusable = None
    if cfg.trainer.reuse_trained and resume_from is None:   # each SLURM task decides alike (the same files)
        from reasoning_sft.training.recipe import find_reusable
        reusable = find_reusable(cfg)
    if rank() == 0:
        open_run_dir(cfg)
        context.save(run_dir)   # the launched ranks read it (they run outside Hydra)
    if reusable is not None:
        from reasoning_sft.training.recipe import run_reused
        return run_reused(cfg, run_dir, *reusable, context) if rank() == 0 else {}
    if needs_launch(cfg):
        launch_workers(cfg, run_dir)
        return json.loads((run_dir / "summary.json").read_text())
    if cfg.deepspeed.config is not None:
        single_process_env()
    try:
        return train_worker(cfg, run_dir, context)
    finally:   # this process is a rank (a SLURM task, or alone): no launcher of ours cleans up after it
        if cfg.deepspeed.config is not None and "MASTER_PORT" in os.environ:
            release_shared_memory(os.environ["MASTER_PORT"], os.environ.get("RANK", "*"))


def resume_checkpoint(cfg: DictConfig, run_dir: Path, set_aside: bool = True) -> Path | None:
    """The checkpoint this run continues from (`trainer.resume`, training/checkpoints.py: resume_from),
    refused when the saved config of the run that wrote it trains something else."""
    from reasoning_sft.config import training_differences
    from reasoning_sft.training.checkpoints import resume_from
    return resume_from(cfg.trainer.resume, cfg.trainer.resume_trust, run_dir,
                       lambda saved: training_differences(OmegaConf.load(saved), cfg), set_aside)


def finished_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None
    return summary if summary and summary.get("stage") == "train" and summary.get("status") == "finished" else None


def train_worker(cfg: DictConfig, run_dir: Path, context: RunContext | None = None) -> dict:
    """One rank's training (the only one in a single-process run). Rank 0 writes the run dir."""
    from reasoning_sft.training.launch import is_worker, rank, write_worker_error
    from reasoning_sft.training.recipe import SFTRecipe
    OmegaConf.set_readonly(cfg, True)   # settled: a launched rank reads config.yaml as the stage froze it
    try:
        return SFTRecipe(cfg, run_dir, context or RunContext.load(run_dir)).run()
    except (ConfigError, DataError) as e:
        if is_worker() and rank() == 0:
            write_worker_error(run_dir, e)   # the launching process raises it again
        raise


def print_summary(summary: dict) -> None:
    from reasoning_sft.evaluation.evaluator import result_line
    run_dir = summary["run_dir"]
    print(f"\nrun dir:     {run_dir}")
    print(f"summary:     {run_dir}/summary.json")
    tr = summary["train"]
    if summary["status"] == "preempted":
        print(f"preempted:   checkpoint at step {tr['steps']}: {tr['checkpoint']}")
        return
    print(f"train:       {tr['steps']} steps, loss {tr['first_loss']:.3f} -> {tr['final_loss']:.3f} "
          f"in {tr['train_seconds']}s" + (f" (reused: trained in {tr['reused_from']})" if tr.get("reused_from") else ""))
    for task, m in summary["eval"].items():
        print(f"{result_line(task, m)}  samples: {run_dir}/eval_samples.jsonl")
    if summary["wandb"]:
        print(f"wandb:       {summary['wandb']['dir']}")
    print(f"total:       {summary['total_seconds']}s")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_cli(run_training, cfg, print_summary)


if __name__ == "__main__":
    main()

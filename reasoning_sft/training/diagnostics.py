"""What a training run tells you about itself, as Trainer callbacks and small helpers: progress lines
on a cluster log, the settings printed before the first step, where start-up time went, and each
rank's report (what it held, its optimizer bytes, which samples it trained on).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from reasoning_sft.config import RunGroups
from reasoning_sft.training.models import count_parameters
from reasoning_sft.rundir import write_json

IMPORTED_AT = time.time()   # start-up accounting: process start -> imports -> composition -> first step


class Diagnostics(TrainerCallback):
    """The time of the first optimizer step, and at the end of training this rank's report
    (ranks/rank<N>.json). Under ZeRO-3 a parameter's local part is `ds_tensor`; the optimizer's bytes
    are the Adam moments of this rank's partition. `samples_seen` is filled by SFTTrainer: the rank
    reports prove the ranks' shares are disjoint and cover the data."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.first_step_at: float | None = None
        self.samples_seen: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        params = list(model.parameters())
        report = {"rank": args.process_index, "world_size": args.world_size,
                  "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),   # SLURM's name, or the host's
                  "parameters_full": count_parameters(model),
                  "parameters_local": sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
                                          for p in params),
                  "optimizer_state_bytes": optimizer_state_bytes(optimizer),
                  "samples_seen": self.samples_seen}
        (self.run_dir / "ranks").mkdir(exist_ok=True)
        write_json(self.run_dir / "ranks" / f"rank{report['rank']}.json", report)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state tensors on this rank, through the wrappers (accelerate, DeepSpeed)."""
    while not isinstance(optimizer, torch.optim.Optimizer) or (
            hasattr(optimizer, "optimizer") and isinstance(optimizer.optimizer, torch.optim.Optimizer)):
        optimizer = optimizer.optimizer
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if torch.is_tensor(v) and v.dim() > 0)



class ProgressLog(TrainerCallback):
    """Plain progress lines when stderr is not a terminal (a cluster log): step / total, loss, lr,
    elapsed and ETA at each logging step. On a terminal the Trainer's own progress bar shows them."""

    def __init__(self):
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        done, total = state.global_step, state.max_steps
        elapsed = time.time() - self.t0
        eta = elapsed / done * (total - done) if done else float("nan")
        print(f"step {done}/{total} ({100 * done / max(total, 1):.0f}%)  loss {float(logs['loss']):.4f}  "
              f"lr {float(logs.get('learning_rate', 0)):.3g}  {_duration(elapsed)} elapsed, ETA {_duration(eta)}",
              file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds != seconds:   # nan: no step yet
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def show_bar(setting) -> bool:
    """trainer.progress_bar: auto (a bar on a terminal, plain lines otherwise) | true | false."""
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def print_start(g: RunGroups, run_dir: Path, card: dict, num_params: int, args) -> None:
    """The settings a run is judged by (its typed groups, config.RunGroups), and where it writes, before
    the first step."""
    t, ds = g.trainer, g.deepspeed.config
    zero = f", ZeRO-{ds['zero_optimization']['stage']}" if ds else ""
    print(f"run dir:     {run_dir}\n"
          f"model:       {g.model.name} ({num_params:,} parameters{', LoRA' if g.peft.enabled else ''})\n"
          f"data:        {g.data.name}: {card['examples']} examples, {card['sequence_tokens']['total']:,} tokens, "
          f"style {g.data.format.thinking_style}, max_seq_len {g.data.max_seq_len}\n"
          f"schedule:    {t.num_epochs:g} epochs{f' (max_steps {t.max_steps})' if t.max_steps > 0 else ''}, global batch "
          f"{t.global_batch_size} = {t.micro_batch_size} x {args.gradient_accumulation_steps} x {args.world_size} "
          f"ranks, lr {t.learning_rate} {t.lr_scheduler}, {args.bf16 and 'bf16' or args.fp16 and 'fp16' or 'fp32'}"
          f"{', packing' if t.packing else ''}{zero}",
          file=sys.stderr, flush=True)


def startup_seconds(entered: float, data_s: float, model_s: float, first_step_at: float | None) -> dict:
    """Where the time to the first optimizer step went (this process; a worker's own imports count)."""
    import psutil
    started = psutil.Process().create_time()
    return {"imports": round(IMPORTED_AT - started, 2), "composition": round(entered - IMPORTED_AT, 2),
            "data": round(data_s, 2), "model": round(model_s, 2),
            "to_first_step": round(first_step_at - started, 2) if first_step_at else None}

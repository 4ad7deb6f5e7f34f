"""Checkpoints that are never mistaken for complete, resume from the last good one, and a clean stop
on SIGTERM (SLURM preemption).

transformers.Trainer writes `checkpoint-<step>/` in place (model or ZeRO shards, optimizer, RNG,
trainer_state.json). A kill mid-write leaves a directory that looks like any other, so every rank
finishes its part, they meet at a barrier, and rank 0 then writes `complete.json`: only checkpoints
holding it are resumed from.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import torch
from typing import Callable
from transformers import TrainerCallback

from reasoning_sft.errors import ConfigError

COMPLETE = "complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """`checkpoint-N` dirs holding the completion marker, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and (p / COMPLETE).is_file()]
    return [p for _, p in sorted(found)]


def set_aside_incomplete(checkpoint_dir: Path) -> list[str]:
    """Rename checkpoints without a marker (a crash mid-write) so nothing resumes from or rotates them."""
    moved = []
    if checkpoint_dir.is_dir():
        for p in sorted(checkpoint_dir.iterdir()):
            if _CHECKPOINT.match(p.name) and not (p / COMPLETE).is_file():
                target, n = p.with_name("incomplete-" + p.name), 1
                while target.exists():   # a second crash at the same step: keep both, never fail
                    n += 1
                    target = p.with_name(f"incomplete-{p.name}.{n}")
                p.rename(target)
                moved.append(p.name)
    return moved


def resume_from(mode: str | None, trust: bool, run_dir: Path, differences: Callable[[Path], list[str]],
                set_aside: bool = True) -> Path | None:
    """The checkpoint to resume from (`trainer.resume`: unfinished, the default: auto when the run dir
    holds an unfinished run, else none | never | auto | a checkpoint path; `trust`: trainer.resume_trust),
    after checking that the saved config of the run that wrote it trains the same thing as this one
    (`differences(saved config.yaml)`: what differs, config.training_differences)."""
    if mode == "unfinished":   # the same command again (a requeued SLURM job, a rerun after a kill) continues
        why = unfinished(run_dir)
        if why is None:
            return None
        print(f"trainer.resume=unfinished: {why}; continuing from its last complete checkpoint", file=sys.stderr)
        mode = "auto"
    if mode in (None, "never"):
        return None
    explicit = None if mode == "auto" else Path(mode)
    if explicit is not None:
        if not (explicit / COMPLETE).is_file():
            raise ConfigError(f"trainer.resume={mode!r}: not a complete checkpoint (no {COMPLETE} in it); "
                              "expected 'never', 'auto' or a checkpoint-N dir")
        if not _inside(explicit, run_dir) and not trust:
            raise ConfigError(f"trainer.resume={mode!r}: the checkpoint is outside this run dir, and resuming "
                              "unpickles its optimizer and RNG state (DeepSpeed and torch load them with "
                              "weights_only=False): set trainer.resume_trust=true if you trust who wrote it")
    # The run that wrote the checkpoint decides what may differ: this run dir's, or the checkpoint's own.
    saved_config = (explicit.parent.parent if explicit is not None else run_dir) / "config.yaml"
    if saved_config.is_file():
        diffs = differences(saved_config)
        if diffs:
            raise ConfigError(f"trainer.resume={mode}: the config differs from {saved_config} in what it trains: "
                              + "; ".join(diffs[:5]) + (f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else ""))
    if mode == "auto":
        if set_aside:   # rank 0 only: the others just read which checkpoints are complete
            set_aside_incomplete(run_dir / "checkpoints")
        done = complete_checkpoints(run_dir / "checkpoints")
        return done[-1] if done else None   # nothing yet: a fresh start in this run dir
    return explicit


def unfinished(run_dir: Path) -> str | None:
    """Why `run_dir` holds a run to continue: complete checkpoints, and no summary of a finished run
    (None when there is nothing to continue)."""
    done = complete_checkpoints(run_dir / "checkpoints")
    if not done:
        return None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    if summary.get("status") == "finished":
        return None
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    status = summary.get("status")
    how = (f"preempted at step {summary.get('train', {}).get('steps')}" if status == "preempted"
           else f"its summary says {status}" if status else "stopped without a summary (killed?)")
    if restarts > 0:
        how += f"; SLURM restarted job {os.environ.get('SLURM_JOB_ID')} (restart {restarts})"
    return f"{run_dir} holds an unfinished run ({how})"


def _inside(path: Path, run_dir: Path) -> bool:
    try:
        path.resolve().relative_to(run_dir.resolve())
        return True
    except ValueError:
        return False


def seconds_trained(checkpoint: Path) -> float:
    """The training time recorded with a checkpoint (0 for one written before this was recorded)."""
    try:
        return float(json.loads((checkpoint / COMPLETE).read_text()).get("train_seconds", 0.0))
    except (OSError, ValueError):
        return 0.0


def check_resumed_data(checkpoint: Path, training_hash: str) -> None:
    """A resumed run trains on exactly the data its checkpoint was trained on (the data card's hash)."""
    card_file = checkpoint.parent.parent / "data_card.json"
    if not card_file.is_file():
        return
    before = json.loads(card_file.read_text()).get("training_hash")
    if before and before != training_hash:
        raise ConfigError(f"trainer.resume={checkpoint}: the training data changed since the checkpoint was "
                          f"written (data card hash {before}, now {training_hash}): the same data file, "
                          "selection and ablation are needed to resume")


def _all_ranks_any(flag: bool) -> bool:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


class CheckpointCallback(TrainerCallback):
    """Marks finished checkpoints complete; on SIGTERM, checkpoints at the next step end and stops.
    Every rank must stop at the same step (the save is collective), so the flag is all-reduced."""

    def __init__(self, save_total_limit: int | None = None, seconds_before: float = 0.0):
        self.save_total_limit = save_total_limit   # rotation happens here, after the new one is complete
        self.seconds_before = seconds_before       # training time of the runs this one resumes
        self.started = None
        self.sigterm = self.sigint = False
        self.preempted_at: int | None = None
        self.signal_name: str | None = None
        self._previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_sigterm)}
        from reasoning_sft.training.launch import is_worker
        if not is_worker():   # one process: a ranks' launcher stops its workers itself (launch_workers)
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            # submitit's notice before the time limit (or a preemption), SIGUSR2 by default: its own
            # handler would requeue and exit at once, mid-step; ours checkpoints first, then requeues
            from submitit import JobEnvironment
            usr = JobEnvironment._usr_sig()
            self._previous[usr] = signal.signal(usr, self._on_sigterm)

    def on_train_end(self, args, state, control, **kwargs):
        # Past the last step nothing would act on the flag: SIGTERM must stop evaluation as usual.
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        import time
        self.started = time.time()
        return control

    def train_seconds(self) -> float:
        """Training time of the whole run so far, resumed parts included."""
        import time
        return self.seconds_before + (time.time() - self.started if self.started else 0.0)

    def _on_sigint(self, signum, frame):
        # Ctrl-C: KeyboardInterrupt as always, and remembered: one raised while Python runs a finaliser or
        # a GC callback is printed and dropped, which let a whole run go on (test_ctrl_c, under load)
        self.sigint = True
        raise KeyboardInterrupt

    def _on_sigterm(self, signum, frame):
        self.sigterm = True
        self.signal_name = signal.Signals(signum).name

    def on_step_end(self, args, state, control, **kwargs):
        if self.sigint:   # a Ctrl-C that was dropped: raised again here
            raise KeyboardInterrupt
        if _all_ranks_any(self.sigterm):
            control.should_save = True
            control.should_training_stop = True
            self.preempted_at = state.global_step
        return control

    def on_save(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()   # every rank's shard is on disk before the marker
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / COMPLETE
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": state.global_step, "pid": os.getpid(),
                                       "train_seconds": round(self.train_seconds(), 1)}))
            tmp.replace(path)
            if self.save_total_limit:
                rotate(Path(args.output_dir), self.save_total_limit, state.global_step)
        return control


def rotate(checkpoint_dir: Path, keep: int, step: int | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `keep`. Called only once the newest is marked
    complete, so a kill at any moment leaves at least one complete checkpoint (the Trainer's own
    rotation deletes the old one before the new one is marked). Checkpoints past `step` (a preempted
    run's, when this one started over) are not this run's to delete until it has moved past them."""
    import shutil
    done = [p for p in complete_checkpoints(checkpoint_dir) if step is None or int(p.name.split("-")[-1]) <= step]
    gone = done[:-keep] if keep >= 1 else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone

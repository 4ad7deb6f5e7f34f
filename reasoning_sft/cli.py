"""A stage's command line: Hydra's runtime, one-line errors with exit code 2, failures recorded in the
run dir, a sweep's failed job recorded and the sweep going on."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.rundir import OPENED_RUN_DIRS, RunContext, finish_stage, release_run_dirs


def run_cli(run: Callable[[DictConfig], dict], cfg: DictConfig, report: Callable[[dict], None],
            writes: str | None = None) -> None:
    """A stage's command line: `run(cfg)`, then `report(summary)` and the run dir (with the files it
    `writes`, when named) as its last line. A bad config or bad data ends in one line naming it, and
    exit code 2; any failure is also written to the run dir's summary.json (status: failed, the error).
    Inside a `-m` sweep the failure is recorded and the sweep goes on: its end counts the failed jobs."""
    import traceback

    from hydra.errors import InstantiationException

    try:
        summary = run(cfg)
        release_run_dirs()
    except KeyboardInterrupt:   # Ctrl-C: one line and a status, not a traceback
        run_dir = Path(cfg.paths.output_dir)
        if run_dir.resolve() in OPENED_RUN_DIRS and int(os.environ.get("RANK", "0")) == 0:
            finish_stage(run_dir, str(cfg.get("task_name", "stage")), status="interrupted",
                         error="interrupted (SIGINT): stopped without a final checkpoint; SIGTERM checkpoints first")
        release_run_dirs()
        print(f"interrupted: {run_dir} (status: interrupted); to stop at a checkpoint, send SIGTERM instead",
              file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - recorded, then re-raised or exited with its code
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
        known = isinstance(cause, (ConfigError, DataError))
        message = f"{'config' if isinstance(cause, ConfigError) else 'data'} error: {cause}" if known \
            else f"{type(cause).__name__}: {cause}"
        failed_dir = record_failure(cfg, message, traceback.format_exc())
        release_run_dirs()
        if failed_dir is not None:   # the run had started: its dir stays, named as failed
            print(f"failed run dir: {mark_failed(failed_dir)} (summary.json: status failed, the error)", file=sys.stderr)
        if in_multirun():
            print(f"job failed: {message}" + ("" if known else "\n" + traceback.format_exc()), file=sys.stderr)
            return
        if known:
            print(message, file=sys.stderr)
            sys.exit(2)
        raise
    report(summary)
    if writes is not None and "run_dir" in summary:
        print(f"run dir: {summary['run_dir']}" + (f"  ({writes})" if writes else ""))


def hydra_runtime():
    """Hydra's runtime config (`hydra.*`) when running under a Hydra app, else None (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig
    return HydraConfig.get() if HydraConfig.initialized() else None


def run_context() -> RunContext:
    """The command line's overrides and a sweep job's name, for the library to be handed."""
    hc = hydra_runtime()
    if hc is None:
        return RunContext()
    return RunContext(tuple(hc.overrides.task), hc.job.override_dirname or None)


def in_multirun() -> bool:
    from hydra.types import RunMode
    hc = hydra_runtime()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def record_failure(cfg: DictConfig, message: str, trace: str) -> Path | None:
    """A failure after the stage opened its run dir (or in a sweep's job) is recorded there
    (summary.json, status failed) and the run dir returned. One before it (a bad config or input found
    up front) writes nothing: another run's summary.json in that dir stays as it was, and the empty
    dir Hydra made for this command is removed, with the folders above it it alone filled."""
    import os
    import shutil
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    try:
        run_dir = Path(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001 - no run dir to write into: the message still goes to stderr
        return None
    if run_dir.resolve() in OPENED_RUN_DIRS or in_multirun():   # a sweep's job dir is its own: the report counts it
        finish_stage(run_dir, str(cfg.get("task_name", "stage")), status="failed", error=message, traceback=trace)
        return None if in_multirun() else run_dir
    hydra_only = {".hydra", f"{cfg.get('task_name', '')}.log"}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= hydra_only:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            top = Path(cfg.paths.log_dir).resolve()
        except Exception:  # noqa: BLE001 - no outputs root known: leave the parents alone
            return None
        for parent in run_dir.resolve().parents:   # outputs/<stage>/runs/<name>/ made for this command alone
            if parent == top or top not in parent.parents:
                break
            try:
                parent.rmdir()   # only when empty
            except OSError:
                break
    return None


HYDRA_TIME_DIR = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")


def mark_failed(run_dir: Path) -> Path:
    """A run dir Hydra named by its start time becomes `<time>-failed`, so a listing of the runs says
    which failed; one the command line named (hydra.run.dir=..., e.g. to resume) keeps its name."""
    if not HYDRA_TIME_DIR.fullmatch(run_dir.name):
        return run_dir
    target = run_dir.with_name(run_dir.name + "-failed")
    try:
        run_dir.rename(target)
    except OSError:
        return run_dir
    return target

"""W&B on rank 0: one run per stage, config logged resolved, group = the study. (The tests read the
offline run files back with tests/wandb_files.py.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from reasoning_sft.schema import LoggerConfig


def has_wandb_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (`wandb login` writes it there)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str, run_dir: Path) -> str:
    """`logger.mode`; `auto` (the default) is online with credentials, else offline, said in one line."""
    if mode != "auto":
        return mode
    if has_wandb_credentials():
        return "online"
    print(f"W&B: no API key (WANDB_API_KEY or `wandb login`): logging offline under {run_dir}/wandb; "
          "upload later with `wandb sync <that dir>/offline-run-*`", file=sys.stderr)
    return "offline"


def init_wandb(logger: LoggerConfig, config: dict, run_dir: Path, job_type: str, experiment_name: str,
               resume: bool = False, name: str | None = None):
    """Start the run (rank 0 only; the caller checks) for the `logger` group, logging `config` (the whole
    resolved run config, as a plain dict). Returns the run, or None when disabled. The run id is kept in
    `<run dir>/wandb_run_id`: a resumed training run continues the same W&B run. `name`: a sweep job's
    override dirname (RunContext); logger.name wins, the experiment name is the fallback."""
    if not logger.enabled or logger.mode == "disabled":
        return None
    mode = wandb_mode(logger.mode, run_dir)
    import wandb

    os.environ.setdefault("WANDB_START_METHOD", "thread")  # a Hydra-launched process can hang otherwise
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    if run_id:
        # W&B hands its service to child processes (WANDB_SERVICE). A killed run's id can stay registered in
        # a service it shared with its parent ("run ID ... is in use"): a resumed run starts a service of its own.
        os.environ.pop("WANDB_SERVICE", None)
    run = wandb.init(
        project=logger.project, entity=logger.entity, group=logger.group,
        job_type=job_type, name=logger.name or name or experiment_name,
        tags=list(logger.tags), config=config, dir=str(run_dir), mode=mode,
        reinit="finish_previous", id=run_id, resume="allow" if run_id else None,
    )
    id_file.write_text(run.id)
    return run


SAMPLE_COLUMNS = ["task", "id", "sample", "prompt", "generation", "extracted", "gold", "correct", "grading",
                  "thinking_tokens", "waits", "capped"]


def log_eval(run, results: dict, run_dir: Path) -> None:
    """Evaluation metrics (eval/<task>/<metric>) and a table of every sample (eval/samples)."""
    import wandb
    run.log({f"eval/{task}/{k}": v for task, metrics in results.items() for k, v in metrics.items()
             if isinstance(v, (int, float))})
    for task, metrics in results.items():   # code: how contained its programs were, on the run itself
        if "sandbox_isolation" in metrics:
            run.summary[f"eval/{task}/sandbox"] = metrics["sandbox"]
            run.summary[f"eval/{task}/sandbox_isolation"] = metrics["sandbox_isolation"]
    with open(run_dir / "eval_samples.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    run.log({"eval/samples": wandb.Table(columns=SAMPLE_COLUMNS,
                                         data=[[r.get(c) for c in SAMPLE_COLUMNS] for r in rows])})

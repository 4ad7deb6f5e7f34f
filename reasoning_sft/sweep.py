"""The end of a `-m` sweep: which jobs finished, which failed and why (sweep_status.json), and an exit
status equal to the number of failed jobs. Registered as a Hydra callback in conf/hydra/default.yaml.

A failing job does not stop the others: the stage's CLI records it in the job's summary.json
(status: failed, the error) and returns, so every other job runs and keeps its results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's job dirs (each holds Hydra's .hydra/), in job order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name))


def sweep_status(sweep_dir: Path) -> dict:
    jobs = []
    for d in job_dirs(sweep_dir):
        summary_file = d / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else \
            {"status": "failed", "error": "no summary.json (the job was killed or never started)"}
        jobs.append({"job": d.name, "status": summary.get("status", "finished"), "error": summary.get("error")})
    failed = [j for j in jobs if j["status"] != "finished"]
    return {"sweep_dir": str(sweep_dir), "jobs": len(jobs), "finished": len(jobs) - len(failed),
            "failed": len(failed), "failures": failed}


class SweepStatus(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        status = sweep_status(sweep_dir)
        (sweep_dir / "sweep_status.json").write_text(json.dumps(status, indent=2) + "\n")
        print(f"\nsweep: {status['finished']} of {status['jobs']} jobs finished, {status['failed']} failed "
              f"({sweep_dir}/sweep_status.json)")
        for f in status["failures"]:
            print(f"  job {f['job']}: {f['error']}")
        print(f"report: python -m reasoning_sft.report {sweep_dir}")
        if status["failed"]:
            sys.exit(min(status["failed"], 255))

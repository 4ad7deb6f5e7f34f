"""Start-up: seconds from the command to the first optimizer step, for the tiny model.

    .venv/bin/python benchmarks/bench_startup.py [--runs 3]

Runs `python -m reasoning_sft.train` (tiny model, 2,000 synthetic samples, one step, no W&B, no final
save) and reads the split from its summary.json (`startup_seconds`): imports, composition (Hydra,
validation, run dir), data preparation, model build, and command -> first optimizer step. Best of --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    best = None
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "reasoning_sft.train", "trainer.max_steps=1", "logger=none",
                            "trainer.save_final_model=false", f"hydra.run.dir={tmp}/run"], cwd=ROOT, check=True,
                           capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            wall = time.time() - t0
            split = json.loads((Path(tmp) / "run" / "summary.json").read_text())["startup_seconds"]
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in split.items()) + f"; process exit {wall:.2f}s")
        if best is None or split["to_first_step"] < best["to_first_step"]:
            best = split
    print("best: " + ", ".join(f"{k} {v:.2f}s" for k, v in best.items()))


if __name__ == "__main__":
    main()

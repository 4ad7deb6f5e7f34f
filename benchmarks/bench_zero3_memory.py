"""ZeRO-3 memory per rank: parameters and optimizer state held by each rank at 2 ranks vs 1.

    .venv/bin/python benchmarks/bench_zero3_memory.py [--model tiny_m]

Trains a few steps through the real launch path (`python -m reasoning_sft.train deepspeed=zero3`, one
process in-process, then two DeepSpeed workers over gloo) and reads each rank's ranks/rank<N>.json:
the elements of every parameter this rank holds (ZeRO-3's `ds_tensor` partitions) and the bytes of its
optimizer state (Adam's moments over its partition). Expect about half at 2 ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(tmp: Path, nproc: int, model: str) -> list[dict]:
    run_dir = tmp / f"n{nproc}"
    subprocess.run([sys.executable, "-m", "reasoning_sft.train", f"model={model}", "deepspeed=zero3",
                    f"trainer.nproc_per_node={nproc}", "trainer.global_batch_size=2",
                    f"trainer.micro_batch_size={2 // nproc}", "trainer.max_steps=2", "data.source.num_problems=64",
                    "logger=none", "trainer.save_final_model=false", f"hydra.run.dir={run_dir}"],
                   cwd=ROOT, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return [json.loads(p.read_text()) for p in sorted((run_dir / "ranks").glob("rank*.json"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny_m")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, two = run(Path(tmp), 1, args.model), run(Path(tmp), 2, args.model)
    print(f"model={args.model}: {one[0]['parameters_full']:,} parameters (fp32)")
    for label, ranks in (("1 rank ", one), ("2 ranks", two)):
        for r in ranks:
            print(f"{label} rank {r['rank']}: parameters {r['parameters_local']:>11,} elements "
                  f"({4 * r['parameters_local'] / 2**20:7.2f} MiB)   optimizer state "
                  f"{r['optimizer_state_bytes'] / 2**20:7.2f} MiB")
    p = max(r["parameters_local"] for r in two) / one[0]["parameters_local"]
    o = max(r["optimizer_state_bytes"] for r in two) / one[0]["optimizer_state_bytes"]
    print(f"2 ranks / 1 rank, per rank: parameters {p:.3f}, optimizer state {o:.3f}")


if __name__ == "__main__":
    main()

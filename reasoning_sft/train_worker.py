"""One rank of a multi-process training run: `python -m reasoning_sft.train_worker <run dir>`.

Started by `reasoning_sft.training.launch` (through DeepSpeed's launcher or torchrun), never by hand: it
trains on the config frozen in `<run dir>/config.yaml`, which the launching Hydra process resolved
and validated once, and writes into that same run dir.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not (Path(argv[0]) / "config.yaml").is_file():
        sys.exit("usage: python -m reasoning_sft.train_worker <run dir holding config.yaml>")
    from reasoning_sft.training.launch import die_with_parent, watch_launcher
    die_with_parent()   # the launcher (DeepSpeed's or torchrun) went away: checkpoint and stop (SIGTERM)
    watch_launcher()    # so did the launching command (even on kill -9): the same
    from reasoning_sft.train import train_worker
    run_dir = Path(argv[0])
    train_worker(OmegaConf.load(run_dir / "config.yaml"), run_dir)
    # Everything is written (W&B finished in train_worker's `finally`). Leave without running the
    # C++ destructors of the process group: tearing it down sometimes aborted a rank here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

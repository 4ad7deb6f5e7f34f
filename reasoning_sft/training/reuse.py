"""A finished training reused rather than repeated (`trainer.reuse_trained=true`).

Two runs train the same model when they train on the same token sequences and labels in the same order
(the data card's `tokens_hash`), with the same model, trainer, DeepSpeed, LoRA and seed settings, on the
same code, libraries and kind of processor. That is the key here. Every finished
training run that saved its model records its key in `<paths.log_dir>/train/trained/<key>.json`; a run
with reuse on that finds its key there links that run's final_model/ (hard links: nothing is copied,
and deleting either run dir leaves the other whole) and evaluates it with its own `eval` group, instead
of training. Its summary.json says so (`train.reused_from`) and carries the trained run's figures.

The tokens, not the data config, decide: make demo-ablation's rate-0 arm (digit corruption at rate 0
changes no trace, only notes so in each record's metadata) trains what make demo-sweep's 22,000-sample
arm trained, and is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from reasoning_sft.config import RESUME_MAY_CHANGE, RunGroups, _flatten

INDEX = Path("train") / "trained"
NOT_TRAINING = RESUME_MAY_CHANGE | {"trainer.reuse_trained"}


def code_fingerprint() -> dict:
    """The code and the float kernels a training ran on: this package's sources, the training libraries'
    versions, and the processor's kernel set (CPUs with other kernels train other models: the demo
    measured 32.0-89.5% at two epochs by CPU) or the GPU's name."""
    import importlib.metadata as metadata

    import torch
    package = Path(__file__).resolve().parents[1]
    sources = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        sources.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = {}
    for lib in ("torch", "transformers", "accelerate", "deepspeed", "peft"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    return {"sources": sources.hexdigest()[:16], "versions": versions, "device": device}


def tokens_hash(examples: list[dict]) -> str:
    """Names what the model is trained on: every example's input ids and labels, in order."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e["input_ids"], e["labels"]], separators=(",", ":")).encode())
    return h.hexdigest()[:16]


def training_key(g: RunGroups, tokens: str) -> str:
    """The key of what the run of groups `g` trains on the examples named by `tokens` (data_card.json's
    tokens_hash): the data and ablation groups are in the tokens; model, trainer, DeepSpeed, LoRA and
    seed are read here (less what a resumed run may change too)."""
    flat = _flatten({name: asdict(getattr(g, name)) for name in ("model", "trainer", "deepspeed", "peft")})
    settings = {k: v for k, v in flat.items() if k not in NOT_TRAINING}
    blob = json.dumps({"settings": settings, "seed": g.seed, "tokens_hash": tokens, "code": code_fingerprint()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def record_finished(log_dir: Path, key: str, run_dir: Path) -> None:
    """Name `run_dir` (finished, its final_model saved) as the training of `key`. Written whole, then renamed."""
    index = Path(log_dir) / INDEX
    index.mkdir(parents=True, exist_ok=True)
    tmp = index / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"run_dir": str(Path(run_dir).resolve())}))
    os.replace(tmp, index / f"{key}.json")


def find_finished(log_dir: Path, key: str) -> Path | None:
    """The finished run of `key`, if it is still there, finished, with its final_model/ and the same key
    in its summary (a run dir trained again since holds another training)."""
    entry = Path(log_dir) / INDEX / f"{key}.json"
    try:
        run_dir = Path(json.loads(entry.read_text())["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    train = summary.get("train") or {}
    if summary.get("status") != "finished" or train.get("training_key") != key or train.get("reused_from"):
        return None
    return run_dir if (run_dir / "final_model").is_dir() else None


def link_trained(source: Path, run_dir: Path) -> None:
    """final_model/ as hard links (a copy across file systems), with the training's own records."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source / "final_model", run_dir / "final_model", copy_function=link, dirs_exist_ok=True)
    for name in ("trainer_state.json",):
        if (source / name).is_file():
            shutil.copy2(source / name, run_dir / name)

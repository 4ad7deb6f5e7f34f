"""reasoning-sft: SFT on long chain-of-thought traces (s1, Sky-T1, Long1K) in one Hydra config tree.

Pipeline map: data -> ablation -> formatting/tokenisation -> train -> evaluate -> report.
"""
__version__ = "0.1.0"

import os as _os

from omegaconf import OmegaConf as _OmegaConf

# `${cwd:}`: the directory a command runs from. Hydra's `${hydra:runtime.cwd}` is not set yet when a
# `-m` sweep resolves `hydra.sweep.dir`, so paths.root_dir uses this (every stage imports the package).
if not _OmegaConf.has_resolver("cwd"):
    _OmegaConf.register_new_resolver("cwd", _os.getcwd)

# transformers prints "[INFO] Running in WANDB offline mode" on stdout when it is imported under
# WANDB_MODE=offline; a command whose stdout is data (`--cfg job > f.yaml`, `--help`) must not carry it.
if _os.environ.get("WANDB_MODE") == "offline" and any(
        a in ("--cfg", "-c", "--help", "-h", "--info", "--hydra-help") for a in __import__("sys").argv[1:]):
    import contextlib as _contextlib
    import sys as _sys

    with _contextlib.redirect_stdout(_sys.stderr):
        import transformers.integrations.integration_utils  # noqa: F401


def _model_tag(model_path, model_name) -> str:
    """`${model_tag:${model_path},${model.name}}`: a run-dir name for an evaluation, after the model
    (`.../runs/demo/<time>/final_model` -> `demo-<time>`; no path: the model config's name)."""
    import re
    from pathlib import Path
    if not model_path:
        return str(model_name)
    p = Path(str(model_path))
    if p.name in ("final_model", "merged_model"):
        p = p.parent
    tag = f"{p.parent.name}-{p.name}" if p.parent.name not in ("", ".", "runs", "multiruns") else p.name
    return re.sub(r"[^\w.=-]+", "_", tag)


if not _OmegaConf.has_resolver("model_tag"):
    _OmegaConf.register_new_resolver("model_tag", _model_tag)


def _file_tag(path) -> str:
    """`${file_tag:${input}}`: a grade run named after the file it grades (`<folder>-<name>`)."""
    import re
    from pathlib import Path
    p = Path(str(path))
    tag = f"{p.parent.name}-{p.stem}" if p.parent.name not in ("", ".") else p.stem
    return re.sub(r"[^\w.=-]+", "_", tag)


if not _OmegaConf.has_resolver("file_tag"):
    _OmegaConf.register_new_resolver("file_tag", _file_tag)

CPU_MODELS = ("tiny",)   # built locally, trained on CPUs: a SLURM job for them asks for no GPU


def _slurm_gpus(model_name, nproc_per_node):
    """`${slurm_gpus:${model.name},${trainer.nproc_per_node}}`: one GPU per rank, none for a CPU model
    (a GRES request on a partition without GPUs fails at sbatch)."""
    return None if str(model_name) in CPU_MODELS else int(nproc_per_node)


def _slurm_cpus(model_name):
    """`${slurm_cpus:${model.name}}`: CPUs per rank (data loading, tokenization); 1 for a CPU model."""
    return 1 if str(model_name) in CPU_MODELS else 8


for _name, _fn in (("slurm_gpus", _slurm_gpus), ("slurm_cpus", _slurm_cpus)):
    if not _OmegaConf.has_resolver(_name):
        _OmegaConf.register_new_resolver(_name, _fn)

# The typed groups' schemas (trainer, data, eval) must be in Hydra's ConfigStore before any composition.
from reasoning_sft.schema import register as _register_schemas  # noqa: E402

_register_schemas()

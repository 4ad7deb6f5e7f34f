"""Shared fixtures: real Hydra composition of conf/, the bundled data dir, offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def compose_config(overrides: list[str], config_name: str = "train", output_dir: Path | None = None) -> DictConfig:
    """Compose like `python -m reasoning_sft.<stage>` would, with `${hydra:...}` resolvable."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(overrides) -> a composed train config writing into tmp_path/run."""
    def _make(overrides=(), config_name="train"):
        return compose_config(list(overrides), config_name, tmp_path / "run")
    return _make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the bundled real data sits beside the project checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from reasoning_sft.models import train_tiny_tokenizer
    return train_tiny_tokenizer(512)

"""Every sweep file composes, and every job of its grid composes and validates."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from conftest import CONF, ROOT
from reasoning_sft.config import validate_train_config

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
EXTRA = {"long1k_lengths": ["data.source.path=/data/openthoughts_math.jsonl"]}


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    # As `--config-dir sweeps` does on the command line: sweeps first, conf/ behind it.
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        return compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONF}]"] + overrides,
                       return_hydra_config=True)


def _jobs(cfg) -> list[list[str]]:
    params = cfg.hydra.sweeper.params
    grids = [[f"{k}={v.strip()}" for v in str(params[k]).split(",")] for k in params]
    return [list(job) for job in itertools.product(*grids)]


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_grid_jobs_compose_and_validate(name, tmp_path):
    text = (ROOT / "sweeps" / f"{name}.yaml").read_text()
    assert f"--config-name {name}" in text.splitlines()[1]        # headed by its exact command
    cfg = _compose(name, EXTRA.get(name, []))
    jobs = _jobs(cfg)
    assert len(jobs) >= 2
    for job in jobs:
        job_cfg = _compose(name, EXTRA.get(name, []) + job)
        assert job_cfg.experiment_name == name
        with open_dict(job_cfg):
            job_cfg.paths.root_dir = str(ROOT)
            job_cfg.paths.output_dir = str(tmp_path)
            del job_cfg["hydra"]
        validate_train_config(job_cfg)
        key, value = job[0].split("=")
        assert str(job_cfg[key.split(".")[0]][key.split(".")[1]]) == value


def test_paper_grids_are_the_papers():
    grid = lambda n: _jobs(_compose(n, EXTRA.get(n, [])))
    assert [j[0] for j in grid("ablation_digit_corruption")] == [f"ablation.rate={r}" for r in ("0.2", "0.5", "0.7", "1.0")]
    assert [j[0] for j in grid("ablation_keyword_removal")] == [f"ablation.rate={r}" for r in ("0.2", "0.5", "1.0")]
    for op in ("shuffle", "delete", "insert"):
        assert [j[0] for j in grid(f"ablation_step_{op}")] == [f"ablation.rate={r}" for r in ("0.33", "0.67", "1.0")]
    assert len(grid("long1k_lengths")) == 6

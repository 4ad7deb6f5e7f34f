"""Prepare stage: `python -m reasoning_sft.prepare data=... ablation=... [overrides]`.

load (data.source) -> select (length filter, length buckets, num_samples) -> ablate (ablation.transforms)
-> data card (reasoning_sft/data/selection.py). Writes prepared.jsonl and data_card.json into its run
dir, so a user can read exactly what a model is trained on; `train` calls the same `prepare_records`.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from reasoning_sft.cli import run_cli
from reasoning_sft.data.records import write_jsonl
from reasoning_sft.data.selection import prepare_records, tokenization_section
from reasoning_sft.rundir import finish_stage, open_run_dir, write_json


def run_prepare(cfg: DictConfig) -> dict:
    from reasoning_sft.config import validate_prepare_config
    g = validate_prepare_config(cfg)
    records = instantiate(g.data.source)   # bad input is named here, before any run dir
    run_dir = open_run_dir(cfg)
    tokenizer = instantiate(g.model.tokenizer)
    records, card = prepare_records(g.data, list(g.transforms), g.ablation, g.seed, tokenizer, records=records)
    card["tokenization"] = tokenization_section(g.data, records, tokenizer)
    write_jsonl(records, run_dir / "prepared.jsonl")
    write_json(run_dir / "data_card.json", card)
    return finish_stage(run_dir, "prepare", data_card=card)


def report(summary: dict) -> None:
    card = summary["data_card"]
    print(f"records: loaded {card['records_loaded']}, selected {card['records_selected']}, "
          f"prepared {card['records_prepared']}  hash {card['content_hash']}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    run_cli(run_prepare, cfg, report, writes="prepared.jsonl, data_card.json")


if __name__ == "__main__":
    main()

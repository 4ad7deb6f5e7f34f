"""Curation stage (s1's pipeline): `python -m reasoning_sft.curate data=... [curation.* overrides]`.

quality -> exact dedup -> decontamination -> difficulty -> diversity sampling (reasoning_sft/data/curation.py).
Each stage can be switched off, is counted in the card, and every removed record is listed with its
reason in `removed.jsonl`; the kept records go to `curated.jsonl`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from reasoning_sft.cli import run_cli
from reasoning_sft.config import prepare_problems
from reasoning_sft.data.curation import CurationContext, curate
from reasoning_sft.errors import ConfigError
from reasoning_sft.schema import raise_errors
from reasoning_sft.data.records import Record, write_jsonl
from reasoning_sft.data.selection import token_counter
from reasoning_sft.rundir import finish_stage, open_run_dir, write_json


def solver_engine(model_path: str):
    """A solver model (a saved model dir) as an HF engine, on the GPU when there is one."""
    import torch

    from reasoning_sft.evaluation.generation import HFEngine
    from reasoning_sft.training.models import load_saved_model
    model, tokenizer = load_saved_model(model_path, "curation.difficulty.solver_models")
    return HFEngine(model.cuda() if torch.cuda.is_available() else model, tokenizer)


def _solve_batch(engine, prompts: list[str], max_new_tokens: int) -> list[tuple[str, int]]:
    from reasoning_sft.evaluation.generation import generate
    return generate(engine, prompts, max_new_tokens, len(prompts))


def solve_with_model(records: list[Record], model_path: str, max_new_tokens: int, batch_size: int,
                     data_parallel_size: int = 1) -> list[Record]:
    """Greedy answers of a solver model (a saved model dir) to every question, kept in
    metadata['solver:<path>'] so the difficulty stage grades them like any solver-answer column; the
    pool's batches spread over `data_parallel_size` replicas (the same batches, so the same answers)."""
    from reasoning_sft.data.formatting import render_prompt
    from reasoning_sft.evaluation.prompts import PROMPTS
    from reasoning_sft.evaluation.replicas import ReplicaPool, run_items
    from reasoning_sft.training.models import load_pretrained_tokenizer

    if data_parallel_size > 1:
        engine = ReplicaPool(partial(solver_engine, model_path), data_parallel_size,
                             load_pretrained_tokenizer(model_path), False,
                             key="curation.difficulty.solver_data_parallel_size")
    else:
        engine = solver_engine(model_path)
    try:
        prompts = [render_prompt(PROMPTS["qwen_math"].user.format(question=r.question), engine.tokenizer)
                   for r in records]
        items = [(prompts[i:i + batch_size], max_new_tokens) for i in range(0, len(prompts), batch_size)]
        outs = [out for part in run_items(engine, _solve_batch, items) for out in part]
    finally:
        if isinstance(engine, ReplicaPool):
            engine.close()
    return [replace(r, metadata={**r.metadata, f"solver:{model_path}": text}) for r, (text, _) in zip(records, outs)]


def build_stages(cfg: DictConfig) -> dict:
    """Every curation stage built from its node, each checking its own parameters; all problems of the
    config (its other groups too) in one message, before any run dir."""
    errs: list[str] = []
    if not prepare_problems(cfg, errs):   # missing values: nothing else can be read
        raise_errors(errs)
    stages = {}
    for name, node in cfg.curation.items():
        try:
            stages[name] = instantiate(node)
        except InstantiationException as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            errs += str(cause).splitlines() if isinstance(cause, ConfigError) else [f"curation.{name}: {cause}"]
    raise_errors(errs)
    return stages


def run_curate(cfg: DictConfig) -> dict:
    stages = build_stages(cfg)
    records = instantiate(cfg.data.source)   # a bad file is named here, before any run dir
    tokenizer = instantiate(cfg.model.tokenizer)
    if "difficulty" in stages:
        stages["difficulty"].check_records(records)
    run_dir = open_run_dir(cfg)
    count_tokens = token_counter(tokenizer)   # memoised: difficulty and diversity measure the same traces
    final, card, removed = curate(records, stages, CurationContext(cfg.seed, count_tokens, solve_with_model))
    card["length_tokenizer"] = cfg.model.name_or_path or cfg.model.name
    card["skipped_by_loader"] = getattr(records, "skipped", {})
    write_jsonl(final, run_dir / "curated.jsonl")
    with open(run_dir / "removed.jsonl", "w", encoding="utf-8") as f:
        for row in removed:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_json(run_dir / "data_card.json", card)
    return finish_stage(run_dir, "curate", data_card=card)


# the stages that count both rule sets: which one ran, and what the other would have flagged
_BOTH_RULES = {"quality": ("quality_rules", "quality_flagged"),
               "decontamination": ("decontamination_method", "decontamination_flagged")}


def report(summary: dict) -> None:
    card = summary["data_card"]
    for s in card["stages"]:
        line = f"{s['stage']:>16}: {s['in']} -> {s['out']}  {s['removed_by_reason']}"
        rules, flagged = _BOTH_RULES.get(s["stage"], (None, None))
        if flagged in card:
            line += f"  (rules {card[rules]}; flagged by each: {card[flagged]})"
        print(line)


@hydra.main(version_base="1.3", config_path="../conf", config_name="curate")
def main(cfg: DictConfig) -> None:
    run_cli(run_curate, cfg, report, writes="curated.jsonl, removed.jsonl, data_card.json")


if __name__ == "__main__":
    main()

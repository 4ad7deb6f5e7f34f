"""Evaluation stage: `python -m reasoning_sft.evaluate model_path=RUN_DIR/final_model [eval=...]`.

Evaluates a saved model (full, or a LoRA adapter over its base) or the `model` config's checkpoint.
The run dir holds config.yaml, eval_samples.jsonl and summary.json.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

# Only the ground floor (and the light prompt-format reader) at import: a config mistake is answered
# before torch and transformers load.
from reasoning_sft.cli import run_cli, run_context
from reasoning_sft.config import settle_generation_budget, validate_eval_config
from reasoning_sft.errors import ConfigError
from reasoning_sft.evaluation.prompts import read_model_format
from reasoning_sft.rundir import finish_stage, open_run_dir
from reasoning_sft.schema import EvalConfig


def load_engine(cfg: DictConfig, ev: EvalConfig):
    """The generation engine of `eval.backend` (registry.BACKENDS) over `model_path` (a saved model or
    adapter dir) or the `model` config's checkpoint; with `eval.data_parallel_size` > 1 a pool of that
    many, each in its own process (evaluation/replicas.py), this process holding the tokenizer only."""
    if ev.data_parallel_size == 1:
        return build_engine(OmegaConf.to_container(cfg, resolve=True), ev)
    from reasoning_sft.evaluation.replicas import ReplicaPool, devices_per_replica
    from reasoning_sft.registry import BACKENDS
    from reasoning_sft.training.models import load_pretrained_tokenizer
    path = cfg.model_path or cfg.model.name_or_path
    tokenizer = load_pretrained_tokenizer(str(path)) if path else instantiate(cfg.model.tokenizer)
    return ReplicaPool(partial(build_engine, OmegaConf.to_container(cfg, resolve=True), ev), ev.data_parallel_size,
                       tokenizer, BACKENDS.get(ev.backend).batches_itself, devices_per_replica(ev))


def build_engine(config: dict, ev: EvalConfig):
    """One engine in this process, from the run's resolved config (picklable: a replica builds its own)."""
    import torch

    from reasoning_sft.registry import BACKENDS
    from reasoning_sft.training.models import load_pretrained_tokenizer, load_saved_model
    backend = BACKENDS.get(ev.backend)
    cfg = OmegaConf.create(config)
    if not backend.loads_model:   # the engine loads the weights itself, from a path
        path = cfg.model_path or cfg.model.name_or_path
        if not path:
            raise ConfigError(f"eval.backend={ev.backend!r}: needs model_path=<dir> or a hub model (model=qwen2.5_...)")
        return backend.build(path, load_pretrained_tokenizer(str(path)), ev, cfg.seed)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if cfg.model_path:
        model, tokenizer = load_saved_model(cfg.model_path, "model_path", dtype=dtype)
    else:
        tokenizer = instantiate(cfg.model.tokenizer)
        model = instantiate(cfg.model.network, tokenizer=tokenizer, dtype=dtype, seed=cfg.seed)
    if torch.cuda.is_available():
        model = model.cuda()
    return backend.build(model, tokenizer, ev, cfg.seed)


def apply_model_format(cfg: DictConfig) -> dict | None:
    """A model this project trained carries its training format (final_model/reasoning_sft.json):
    thinking style and system prompt. It sets `data.format` unless the command line set it."""
    if not cfg.model_path:
        return None
    fmt = read_model_format(Path(cfg.model_path))
    if fmt is None:
        return None
    given = {o.split("=", 1)[0].lstrip("+~") for o in run_context().overrides}
    with open_dict(cfg):
        for key in ("thinking_style", "system_prompt"):
            if f"data.format.{key}" not in given:
                cfg.data.format[key] = fmt[key]
    return fmt


def model_context(cfg: DictConfig) -> tuple[int, str] | None:
    """(the model's context length, where it says so) when its config can be read here without loading it."""
    import json
    path = cfg.model_path or cfg.model.name_or_path
    if path and (Path(str(path)) / "config.json").is_file():
        n = json.loads((Path(str(path)) / "config.json").read_text()).get("max_position_embeddings")
        return (int(n), f"max_position_embeddings in {path}/config.json") if n else None
    network = cfg.model.network
    if not path and network.get("max_position_embeddings"):
        return int(network.max_position_embeddings), "model.network.max_position_embeddings"
    return None


def check_budget_fits(cfg: DictConfig, ev: EvalConfig) -> None:
    """The HF backend generates past the model's context without a word (RoPE extrapolates, badly): a
    budget beyond it is refused in one line, before any run dir. vLLM has its own limit (eval.vllm.max_model_len)."""
    from reasoning_sft.registry import BACKENDS
    context = model_context(cfg) if BACKENDS.get(ev.backend).loads_model else None
    if context and ev.max_new_tokens > context[0]:
        raise ConfigError(f"eval.max_new_tokens={ev.max_new_tokens}: more than the model's context of {context[0]} "
                          f"tokens ({context[1]}); lower it, or evaluate on eval.backend=vllm with "
                          f"eval.vllm.max_model_len={ev.max_new_tokens + 4096} (past the model's own limit, as "
                          "Long1K's predict.sh runs)")


def trained_run_dir(model_path: str | None) -> str | None:
    """The train run that produced the model (its run dir holds summary.json), when there is one."""
    if not model_path:
        return None
    for d in (Path(model_path), *Path(model_path).resolve().parents[:2]):
        if (d / "summary.json").is_file() and (d / "config.yaml").is_file():
            return str(d.resolve())
    return None


def run_evaluation(cfg: DictConfig) -> dict:
    t0 = time.time()
    if cfg.model_path and not Path(str(cfg.model_path)).is_dir():   # before any run dir
        raise ConfigError(f"model_path={cfg.model_path!r}: no such directory (a saved model or adapter, e.g. "
                          "<train run dir>/final_model)")
    trained_format = apply_model_format(cfg)   # derived values first: the model's format, the budget
    settle_generation_budget(cfg, (trained_format or {}).get("max_seq_len"))
    g = validate_eval_config(cfg)
    from reasoning_sft.data.synthetic import trained_shape
    from reasoning_sft.evaluation.evaluator import Evaluator
    fmt = g.data.format
    evaluator = Evaluator(g.eval, fmt.thinking_style, fmt.system_prompt, g.seed, trained_shape(g.data.source))
    evaluator.check()                          # every task's problems, read once, before any run dir
    check_budget_fits(cfg, g.eval)
    from reasoning_sft.registry import BACKENDS
    BACKENDS.get(g.eval.backend).require()     # installed (vLLM), or one line saying how
    if g.eval.data_parallel_size > 1:          # the GPUs the replicas need are there
        from reasoning_sft.evaluation.replicas import devices_per_replica, placements
        placements(g.eval.data_parallel_size, devices_per_replica(g.eval))
    run_dir = open_run_dir(cfg)                # the config is settled (read-only) from here
    from reasoning_sft.training.wandb_logging import init_wandb, log_eval
    evaluator.attach(load_engine(cfg, g.eval))
    wandb_run = init_wandb(g.logger, OmegaConf.to_container(cfg, resolve=True), run_dir, "evaluate",
                           g.experiment_name, name=run_context().override_dirname)
    try:
        results = evaluator.run(run_dir)
        if wandb_run:
            log_eval(wandb_run, results, run_dir)
        return finish_stage(run_dir, "evaluate", model=cfg.model_path or g.model.name,
                            model_run_dir=trained_run_dir(cfg.model_path), eval=results,
                            prompt={"name": g.eval.prompt, "thinking_style": fmt.thinking_style,
                                    "system_prompt": fmt.system_prompt, "from_model": trained_format is not None},
                            total_seconds=round(time.time() - t0, 1),
                            wandb={"run_id": wandb_run.id, "dir": wandb_run.dir} if wandb_run else None)
    finally:
        if close := getattr(evaluator.engine, "close", None):   # the replicas, vLLM's engine processes
            close()
        if wandb_run:
            wandb_run.finish()


def report(summary: dict) -> None:
    from reasoning_sft.evaluation.evaluator import result_line
    for task, m in summary["eval"].items():
        print(result_line(task, m))
    if summary.get("model_run_dir"):
        print(f"model from:  {summary['model_run_dir']}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_cli(run_evaluation, cfg, report, writes="")


if __name__ == "__main__":
    main()

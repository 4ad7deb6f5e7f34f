"""A model card for a trained run (final_model/README.md), and the optional upload to the hub.

The card says what a reader needs to trust the weights: the base model, the exact training data (name
and content hash from the data card), the config overrides, the training figures and each evaluation
with its interval. `trainer.push_to_hub=true trainer.hub_model_id=ORG/NAME` uploads final_model/ with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sft.errors import ConfigError


def model_card(cfg: DictConfig, summary: dict, overrides: list[str]) -> str:
    card, train = summary["data"], summary["train"]
    base = cfg.model.name_or_path or f"{cfg.model.name} (built from its config, seed {cfg.seed})"
    lines = [
        "---", "library_name: transformers", "tags: [reasoning-sft, long-cot, sft]",
        *([f"base_model: {cfg.model.name_or_path}"] if cfg.model.name_or_path else []), "---", "",
        f"# {cfg.experiment_name}: {cfg.model.name} fine-tuned on {cfg.data.name}", "",
        "Trained with reasoning-sft (supervised fine-tuning on long chain-of-thought traces).", "",
        "## Training", "",
        f"- base model: {base}{' + LoRA adapter' if cfg.peft.enabled else ''}",
        f"- data: {cfg.data.name}, {card['examples']} examples, training hash `{card['training_hash']}` "
        f"(thinking style {cfg.data.format.thinking_style}, max_seq_len {cfg.data.max_seq_len})",
        f"- ablation: {cfg.ablation.name}",
        f"- {train['steps']} steps, loss {train['first_loss']:.4f} -> {train['final_loss']:.4f}, "
        f"lr {cfg.trainer.learning_rate} {cfg.trainer.lr_scheduler}, global batch {cfg.trainer.global_batch_size}, "
        f"{train['precision']}, {train['world_size']} process(es)",
        f"- command overrides: `{' '.join(overrides) or '(none)'}`", "",
        "## Evaluation", "",
    ]
    if not summary["eval"]:
        lines.append("Not evaluated in this run (`python -m reasoning_sft.evaluate model_path=...`).")
    for task, m in summary["eval"].items():
        if "accuracy" in m:
            lines.append(f"- {task}: accuracy {m['accuracy']:.3f} (95% CI {m['ci95_low']:.3f}-{m['ci95_high']:.3f}, "
                         f"{m['num_problems']} problems)")
        else:
            lines.append(f"- {task}: {json.dumps(m.get('lm_eval', m))}")
    lines += ["", "## Prompt", "", "Ask it as it was trained: `reasoning_sft.json` beside the weights names the "
              "thinking style and system prompt; `python -m reasoning_sft.evaluate model_path=<this dir>` reads it.", ""]
    return "\n".join(lines)


def check_push(cfg: DictConfig) -> None:
    """Before training: an upload needs a repo id."""
    if cfg.trainer.push_to_hub and not cfg.trainer.hub_model_id:
        raise ConfigError("trainer.push_to_hub=true: set trainer.hub_model_id=<org>/<name> (the repo to upload to)")


def write_and_push(model_dir: Path, cfg: DictConfig, summary: dict, overrides: list[str]) -> str | None:
    """Write the card; upload the folder when asked. Returns the repo URL, or None."""
    (model_dir / "README.md").write_text(model_card(cfg, summary, overrides), encoding="utf-8")
    if not cfg.trainer.push_to_hub:
        return None
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(cfg.trainer.hub_model_id, exist_ok=True, private=cfg.trainer.hub_private)
    info = api.upload_folder(repo_id=cfg.trainer.hub_model_id, folder_path=str(model_dir),
                             commit_message=f"reasoning-sft: {cfg.experiment_name}")
    return str(getattr(info, "commit_url", cfg.trainer.hub_model_id))

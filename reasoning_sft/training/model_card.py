"""A model card for a trained run (final_model/README.md), and the optional upload to the hub.

The card says what a reader needs to trust the weights: the base model, the exact training data (name
and content hash from the data card), the config overrides, the training figures and each evaluation
with its interval. `trainer.push_to_hub=true trainer.hub_model_id=ORG/NAME` uploads final_model/ with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasoning_sft.config import RunGroups
from reasoning_sft.errors import ConfigError


def model_card(g: RunGroups, ablation: str, summary: dict, overrides: list[str]) -> str:
    """The card of a run whose typed groups are `g` (config.RunGroups), trained under `ablation`."""
    card, train, model, data, t = summary["data"], summary["train"], g.model, g.data, g.trainer
    base = model.name_or_path or f"{model.name} (built from its config, seed {g.seed})"
    lines = [
        "---", "library_name: transformers", "tags: [reasoning-sft, long-cot, sft]",
        *([f"base_model: {model.name_or_path}"] if model.name_or_path else []), "---", "",
        f"# {g.experiment_name}: {model.name} fine-tuned on {data.name}", "",
        "Trained with reasoning-sft (supervised fine-tuning on long chain-of-thought traces).", "",
        "## Training", "",
        f"- base model: {base}{' + LoRA adapter' if g.peft.enabled else ''}",
        f"- data: {data.name}, {card['examples']} examples, training hash `{card['training_hash']}` "
        f"(thinking style {data.format.thinking_style}, max_seq_len {data.max_seq_len})",
        f"- ablation: {ablation}",
        f"- {train['steps']} steps, loss {train['first_loss']:.4f} -> {train['final_loss']:.4f}, "
        f"lr {t.learning_rate} {t.lr_scheduler}, global batch {t.global_batch_size}, "
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


def check_push(trainer) -> None:
    """Before training: an upload needs a repo id (the trainer group's hub keys)."""
    if trainer.push_to_hub and not trainer.hub_model_id:
        raise ConfigError("trainer.push_to_hub=true: set trainer.hub_model_id=<org>/<name> (the repo to upload to)")


def write_and_push(model_dir: Path, g: RunGroups, ablation: str, summary: dict, overrides: list[str]) -> str | None:
    """Write the card; upload the folder when asked. Returns the repo URL, or None."""
    (model_dir / "README.md").write_text(model_card(g, ablation, summary, overrides), encoding="utf-8")
    t = g.trainer
    if not t.push_to_hub:
        return None
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(t.hub_model_id, exist_ok=True, private=t.hub_private)
    info = api.upload_folder(repo_id=t.hub_model_id, folder_path=str(model_dir),
                             commit_message=f"reasoning-sft: {g.experiment_name}")
    return str(getattr(info, "commit_url", t.hub_model_id))

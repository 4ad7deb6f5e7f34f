"""Training stage: `python -m reasoning_sft.train [experiment=NAME] [overrides]`.

Reads as the pipeline: validate -> tokenizer -> records -> tokenized examples -> model -> Trainer
-> final model -> (evaluation) -> summary.json. The run dir holds config.yaml (resolved),
data_card.json, metrics.jsonl, final_model/, eval_samples.jsonl, summary.json and wandb/.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

from reasoning_sft.config import (ConfigError, check_hardware, grad_accumulation, open_run_dir, training_dtype,
                                  finish_stage, run_cli, validate_train_config, write_json)
from reasoning_sft.evaluation import result_line, run_tasks
from reasoning_sft.formatting import get_style, tokenize_records
from reasoning_sft.models import count_parameters
from reasoning_sft.prepare import prepare_records, token_stats
from reasoning_sft.records import content_hash
from reasoning_sft.wandb_logging import init_wandb, log_eval


def prepare_examples(cfg: DictConfig, tokenizer) -> tuple[list[dict], dict]:
    """The prepare stage's records, tokenized with assistant-only labels; the card counts all."""
    records, card = prepare_records(cfg, tokenizer)
    examples, counts = tokenize_records(records, tokenizer, get_style(cfg.data.format.thinking_style),
                                        cfg.data.max_seq_len, cfg.data.overflow,
                                        cfg.data.format.system_prompt)
    if not examples:
        raise ConfigError(f"data.max_seq_len={cfg.data.max_seq_len}: too small for any of the "
                          f"{len(records)} samples of data={cfg.data.name} ({dict(counts)})")
    card["tokenization"] = dict(counts)
    lengths = [len(e["input_ids"]) for e in examples]
    card["sequence_tokens"] = token_stats(lengths)
    card["supervised_tokens"] = sum(sum(x != -100 for x in e["labels"]) for e in examples)
    card["examples"] = len(examples)
    kept = {e["id"] for e in examples}   # names the exact training set (tokenization may drop some)
    card["training_hash"] = content_hash(r for r in records if r.id in kept)
    return [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples], card


def training_arguments(cfg: DictConfig, run_dir: Path, precision: str, report_to: list[str]) -> TrainingArguments:
    t = cfg.trainer
    ds_config = None
    if cfg.deepspeed.config is not None:
        ds_config = OmegaConf.to_container(cfg.deepspeed.config, resolve=True)
        # Explicit numbers, never "auto": DeepSpeed checks global = micro x accumulation x world.
        ds_config.update(train_micro_batch_size_per_gpu=t.micro_batch_size,
                         gradient_accumulation_steps=grad_accumulation(cfg),
                         train_batch_size=t.global_batch_size,
                         bf16={"enabled": precision == "bf16"}, fp16={"enabled": precision == "fp16"})
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=grad_accumulation(cfg),
        num_train_epochs=t.num_epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
        warmup_steps=float(t.warmup_ratio),   # < 1 means a ratio of the total steps
        weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        bf16=precision == "bf16", fp16=precision == "fp16",
        activation_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="no", report_to=report_to, run_name=cfg.experiment_name,
        seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        deepspeed=ds_config,
        dataloader_num_workers=t.dataloader_num_workers, train_sampling_strategy=t.sampling,
        remove_unused_columns=False, disable_tqdm=not t.progress_bar,
    )


def run_training(cfg: DictConfig) -> dict:
    """The whole stage for an already composed config; returns what it writes to summary.json."""
    t0 = time.time()
    validate_train_config(cfg)
    check_hardware(cfg)
    run_dir = open_run_dir(cfg)
    set_seed(cfg.seed)

    tokenizer = instantiate(cfg.model.tokenizer)
    examples, card = prepare_examples(cfg, tokenizer)
    write_json(run_dir / "data_card.json", card)

    precision, dtype = training_dtype(cfg)
    model = instantiate(cfg.model.network, tokenizer=tokenizer, dtype=dtype, seed=cfg.seed)
    num_params = count_parameters(model)
    if cfg.peft.enabled:
        from peft import get_peft_model
        model = get_peft_model(model, instantiate(cfg.peft.config))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    rank = int(os.environ.get("RANK", "0"))
    wandb_run = init_wandb(cfg, run_dir, "train", {"data_card": card, "num_parameters": num_params}) \
        if rank == 0 else None
    try:
        args = training_arguments(cfg, run_dir, precision, ["wandb"] if wandb_run else ["none"])
        trainer = Trainer(model=model, args=args, train_dataset=examples, processing_class=tokenizer,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        t_train = time.time()
        result = trainer.train()
        train_seconds = time.time() - t_train
        with open(run_dir / "metrics.jsonl", "w") as f:
            for entry in trainer.state.log_history:
                f.write(json.dumps(entry) + "\n")
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]

        if cfg.trainer.save_final_model:
            trainer.save_model(str(run_dir / "final_model"))
            tokenizer.save_pretrained(str(run_dir / "final_model"))
            if cfg.peft.enabled and cfg.peft.merge_after_train:
                merged = trainer.model.merge_and_unload()
                merged.save_pretrained(str(run_dir / "merged_model"))
                tokenizer.save_pretrained(str(run_dir / "merged_model"))

        evaluation = {}
        if cfg.eval.after_train and rank == 0:
            evaluation = run_tasks(trainer.model, tokenizer, cfg, run_dir)
            if wandb_run:
                log_eval(wandb_run, evaluation, run_dir)

        results = {
            "experiment": cfg.experiment_name,
            "model": cfg.model.name, "num_parameters": num_params, "trainable_parameters": trainable,
            "data": card,
            "train": {"steps": trainer.state.global_step, "first_loss": losses[0], "final_loss": losses[-1],
                      "mean_train_loss": result.training_loss, "train_seconds": round(train_seconds, 1),
                      "tokens_seen": card["sequence_tokens"]["total"] * trainer.state.num_train_epochs,
                      "precision": precision, "gradient_accumulation": grad_accumulation(cfg)},
            "eval": evaluation,
            "wandb": {"run_id": wandb_run.id, "dir": wandb_run.dir} if wandb_run else None,
            "total_seconds": round(time.time() - t0, 1),
        }
        if wandb_run:
            wandb_run.summary.update({"data_hash": card["training_hash"], "total_seconds": results["total_seconds"]})
        return finish_stage(run_dir, "train", **results)
    finally:
        if wandb_run:
            wandb_run.finish()   # in `finally`: a failed multirun job must not leak into the next


def print_summary(summary: dict) -> None:
    run_dir = summary["run_dir"]
    print(f"\nrun dir:     {run_dir}")
    print(f"summary:     {run_dir}/summary.json")
    tr = summary["train"]
    print(f"train:       {tr['steps']} steps, loss {tr['first_loss']:.3f} -> {tr['final_loss']:.3f} "
          f"in {tr['train_seconds']}s")
    for task, m in summary["eval"].items():
        print(f"{result_line(task, m)}  samples: {run_dir}/eval_samples.jsonl")
    if summary["wandb"]:
        print(f"wandb:       {summary['wandb']['dir']}")
    print(f"total:       {summary['total_seconds']}s")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_cli(run_training, cfg, print_summary)


if __name__ == "__main__":
    main()

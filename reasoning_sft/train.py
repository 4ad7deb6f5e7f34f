"""Training stage: `python -m reasoning_sft.train [experiment=NAME] [overrides]`.

Reads as the pipeline: validate -> tokenizer -> records -> tokenized examples -> model -> Trainer
-> final model -> (evaluation) -> summary.json. The run dir holds config.yaml (resolved),
data_card.json, metrics.jsonl, final_model/, eval_samples.jsonl, summary.json and wandb/.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from reasoning_sft.chunked_loss import add_chunked_loss
from reasoning_sft.cpu_allocator import keep_freed_memory
from reasoning_sft.checkpoints import CheckpointCallback, check_resumed_data, resume_checkpoint, seconds_trained
from reasoning_sft.config import (check_hardware, data_parallel_size, grad_accumulation, sequence_parallel_size,
                                  training_dtype, validate_train_config, world_size)
from reasoning_sft.rundir import finish_stage, lock_run_dir, open_run_dir, write_json
from reasoning_sft.cli import hydra_runtime, run_cli
from reasoning_sft.errors import ConfigError
from reasoning_sft.data.loaders import DataError
from reasoning_sft.launch import (check_launch_config, is_worker, launch_workers, launcher_name, needs_launch, rank,
                                  finish_distributed, single_process_env, slurm_rank_env,
                                  write_worker_error)
from reasoning_sft.evaluation import generation_budget, result_line
from reasoning_sft.formatting import get_style, tokenize_records, training_system_prompt
from reasoning_sft.models import count_parameters, load_pretrained_tokenizer
from reasoning_sft.packing import PackedCollator, pack_examples, use_packed_attention
from reasoning_sft.prepare import prepare_records, token_stats
from reasoning_sft.lm_eval_tasks import check_eval_config, run_tasks
from reasoning_sft.model_card import check_push, write_and_push
from reasoning_sft.prompts import write_model_format
from reasoning_sft.records import content_hash
from reasoning_sft.wandb_logging import init_wandb, log_eval

IMPORTED_AT = time.time()   # start-up accounting: process start -> imports -> composition -> first step


class FirstStepTime(TrainerCallback):
    def __init__(self):
        self.at: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.at is None:
            self.at = time.time()


class ProgressLog(TrainerCallback):
    """Plain progress lines when stderr is not a terminal (a cluster log): step / total, loss, lr,
    elapsed and ETA at each logging step. On a terminal the Trainer's own progress bar shows them."""

    def __init__(self):
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        done, total = state.global_step, state.max_steps
        elapsed = time.time() - self.t0
        eta = elapsed / done * (total - done) if done else float("nan")
        print(f"step {done}/{total} ({100 * done / max(total, 1):.0f}%)  loss {float(logs['loss']):.4f}  "
              f"lr {float(logs.get('learning_rate', 0)):.3g}  {_duration(elapsed)} elapsed, ETA {_duration(eta)}",
              file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds != seconds:   # nan: no step yet
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def show_bar(cfg: DictConfig) -> bool:
    """trainer.progress_bar: auto (a bar on a terminal, plain lines otherwise) | true | false."""
    setting = cfg.trainer.progress_bar
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def print_start(cfg: DictConfig, run_dir: Path, card: dict, num_params: int, args) -> None:
    """The settings a run is judged by, and where it writes, before the first step."""
    t = cfg.trainer
    zero = f", ZeRO-{cfg.deepspeed.config.zero_optimization.stage}" if cfg.deepspeed.config else ""
    print(f"run dir:     {run_dir}\n"
          f"model:       {cfg.model.name} ({num_params:,} parameters{', LoRA' if cfg.peft.enabled else ''})\n"
          f"data:        {cfg.data.name}: {card['examples']} examples, {card['sequence_tokens']['total']:,} tokens, "
          f"style {cfg.data.format.thinking_style}, max_seq_len {cfg.data.max_seq_len}\n"
          f"schedule:    {t.num_epochs} epochs{f' (max_steps {t.max_steps})' if t.max_steps > 0 else ''}, global batch "
          f"{t.global_batch_size} = {t.micro_batch_size} x {args.gradient_accumulation_steps} x {args.world_size} "
          f"ranks, lr {t.learning_rate} {t.lr_scheduler}, {args.bf16 and 'bf16' or args.fp16 and 'fp16' or 'fp32'}"
          f"{', packing' if t.packing else ''}{zero}",
          file=sys.stderr, flush=True)


def startup_seconds(entered: float, data_s: float, model_s: float, first_step_at: float | None) -> dict:
    """Where the time to the first optimizer step went (this process; a worker's own imports count)."""
    import psutil
    started = psutil.Process().create_time()
    return {"imports": round(IMPORTED_AT - started, 2), "composition": round(entered - IMPORTED_AT, 2),
            "data": round(data_s, 2), "model": round(model_s, 2),
            "to_first_step": round(first_step_at - started, 2) if first_step_at else None}


def prepare_examples(cfg: DictConfig, tokenizer) -> tuple[list[dict], dict]:
    """The prepare stage's records, tokenized with assistant-only labels; the card counts all."""
    records, card = prepare_records(cfg, tokenizer, measure_traces=False)
    examples, counts = tokenize_records(records, tokenizer, get_style(cfg.data.format.thinking_style),
                                        cfg.data.max_seq_len, cfg.data.overflow,
                                        cfg.data.format.system_prompt)
    if not examples:
        raise ConfigError(f"data.max_seq_len={cfg.data.max_seq_len}: too small for any of the "
                          f"{len(records)} samples of data={cfg.data.name} ({dict(counts)})")
    card["tokenization"] = dict(counts)
    card["system_prompt"] = training_system_prompt(records, cfg.data.format.system_prompt)
    traces = [e["thinking_tokens"] for e in examples if e["thinking_tokens"] is not None]
    card["trace_tokens"] = token_stats(traces) if traces else {}   # in context, of the kept samples
    lengths = [len(e["input_ids"]) for e in examples]
    card["sequence_tokens"] = token_stats(lengths)
    card["supervised_tokens"] = sum(e["supervised_tokens"] for e in examples)
    card["examples"] = len(examples)
    kept = {e["id"] for e in examples}   # names the exact training set (tokenization may drop some)
    card["training_hash"] = card["content_hash"] if len(kept) == len(records) else \
        content_hash(r for r in records if r.id in kept)
    return [{"input_ids": e["input_ids"], "labels": e["labels"], "sample_index": i}
            for i, e in enumerate(examples)], card


def training_arguments(cfg: DictConfig, run_dir: Path, precision: str, report_to: list[str]) -> TrainingArguments:
    t = cfg.trainer
    ds_config = None
    if cfg.deepspeed.config is not None:
        ds_config = OmegaConf.to_container(cfg.deepspeed.config, resolve=True)
        # Explicit numbers, never "auto": DeepSpeed checks global = micro x accumulation x world.
        ds_config.update(train_micro_batch_size_per_gpu=t.micro_batch_size,
                         gradient_accumulation_steps=grad_accumulation(cfg),
                         train_batch_size=t.global_batch_size if sequence_parallel_size(cfg) == 1 else "auto",
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
        activation_checkpointing=t.gradient_checkpointing, use_liger_kernel=t.liger_kernel,
        logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps" if t.save_steps > 0 else "no", save_steps=t.save_steps or 500,
        save_total_limit=None,   # CheckpointCallback rotates, after the new checkpoint is complete
        report_to=report_to, run_name=cfg.experiment_name,
        seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),   # on CPU, without it world_size reads 1 on every rank
        deepspeed=ds_config,
        dataloader_num_workers=t.dataloader_num_workers, train_sampling_strategy=t.sampling,
        remove_unused_columns=False, disable_tqdm=not show_bar(cfg),
        parallelism_config=ulysses_config(cfg),
    )


def ulysses_config(cfg: DictConfig):
    """DeepSpeed Ulysses sequence parallelism through accelerate (transformers' integration): each
    sequence is split over `trainer.sequence_parallel_size` GPUs; None when it is 1."""
    sp = sequence_parallel_size(cfg)
    if sp == 1:
        return None
    import deepspeed
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils import DeepSpeedSequenceParallelConfig
    deepspeed.init_distributed()   # Ulysses builds its groups on deepspeed.comm before the engine would
    attention = cfg.model.network.get("attn_implementation", "sdpa")
    return ParallelismConfig(sp_backend="deepspeed", sp_size=sp, sp_handler=DeepSpeedSequenceParallelConfig(
        sp_seq_length_is_variable=True, sp_attn_implementation=attention))


class SequenceParallelCollator:
    """Padded batches for Ulysses: lengths a multiple of the SP size (each rank takes an equal slice),
    position ids and sample indices per token, which the SP data loader adapter shards with the tokens.
    The adapter all-gathers the SP group's batches: gloo (CPU) needs equal sizes, so there every batch
    is padded to `max_length`; NCCL takes uneven ones."""

    def __init__(self, tokenizer, sp: int, max_length: int):
        equal = not torch.cuda.is_available()
        self.pad = DataCollatorForSeq2Seq(tokenizer, padding="max_length" if equal else True, label_pad_token_id=-100,
                                          pad_to_multiple_of=sp, max_length=max_length if equal else None)

    def __call__(self, features):
        batch = self.pad([{k: f[k] for k in ("input_ids", "labels")} for f in features])
        batch.pop("attention_mask", None)   # Ulysses discards masks; right padding is causal-safe
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"]).clone()
        if "sample_index" in features[0]:
            batch["sample_index"] = torch.tensor([f["sample_index"] for f in features])[:, None].expand_as(
                batch["input_ids"]).clone()
        return batch


class SFTTrainer(Trainer):
    """transformers.Trainer that notes which samples this rank trained on (the rank report proves
    the ranks' shares are disjoint and cover the data), and can keep activations in CPU memory."""

    def __init__(self, *args, activation_offload: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples_seen: list[int] = []
        self.activation_offload = activation_offload

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop("sample_index")
        self.samples_seen += (index[:, 0] if index.dim() == 2 else index).tolist()   # SP: one per token
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.activation_offload:
            return super().training_step(model, inputs, num_items_in_batch)
        # Activations kept for backward live in (pinned) CPU memory: GPU memory for longer sequences.
        with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
            return super().training_step(model, inputs, num_items_in_batch)


def run_training(cfg: DictConfig) -> dict:
    """The whole stage for an already composed config; returns what it writes to summary.json.
    With more than one process it freezes the config into the run dir and launches the workers."""
    validate_train_config(cfg)
    if cfg.eval.get("after_train"):
        check_eval_config(cfg)   # before training: a bad task must not cost a training run its results
    check_push(cfg)
    check_hardware(cfg)
    check_launch_config(cfg)
    if launcher_name(cfg) == "slurm":
        os.environ.update(slurm_rank_env(dict(os.environ), cfg.trainer.master_port))
    run_dir = Path(cfg.paths.output_dir)
    lock_run_dir(run_dir)   # before anything reads or sets aside its checkpoints
    finished = finished_summary(run_dir) if cfg.trainer.resume == "auto" else None
    if finished is not None:   # nothing to resume: training again would overwrite final_model/
        print(f"trainer.resume=auto: {run_dir} already finished training; nothing to do "
              f"(its summary.json and final_model/ are left as they are)", file=sys.stderr)
        return finished
    resume_from = resume_checkpoint(cfg, run_dir, set_aside=rank() == 0)
    if resume_from is not None:
        cfg.trainer.resume = str(resume_from)   # the frozen config names the checkpoint
        if rank() == 0:
            print(f"resuming from {resume_from} (step {resume_from.name.split('-')[-1]}, "
                  f"{seconds_trained(resume_from):.0f}s trained before)", file=sys.stderr)
    if rank() == 0:
        open_run_dir(cfg)
    if needs_launch(cfg):
        launch_workers(cfg, run_dir)
        return json.loads((run_dir / "summary.json").read_text())
    if cfg.deepspeed.config is not None:
        single_process_env()
    return train_worker(cfg, run_dir)


class _TiedWeightsFilter(logging.Filter):
    def __init__(self, keys: set[str]):
        super().__init__()
        self.keys = keys

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("missing keys in the checkpoint" in msg and all(k in msg for k in self.keys))


def quiet_tied_weights_warning(model) -> None:
    """A model with tied embeddings stores lm_head.weight once (as the embedding): the Trainer's
    resume warns that it is missing from the checkpoint. Expected, so it is said once and silenced."""
    if getattr(model.config, "tie_word_embeddings", False):
        logging.getLogger("transformers.trainer").addFilter(_TiedWeightsFilter({"lm_head.weight"}))


def mean_logged_loss(log_history: list[dict], fallback: float) -> float:
    """Mean training loss over the whole run, each logged loss weighted by the steps it covers. After a
    resume the log history holds the checkpoint's entries too (the Trainer's own figure would cover
    only the resumed steps)."""
    total = steps = 0.0
    previous = 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            covered = max(entry["step"] - previous, 1)
            total += float(entry["loss"]) * covered
            steps += covered
            previous = entry["step"]
    return total / steps if steps else fallback


def finished_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None
    return summary if summary and summary.get("stage") == "train" and summary.get("status") == "finished" else None


def train_worker(cfg: DictConfig, run_dir: Path) -> dict:
    """One rank's training (the only one in a single-process run). Rank 0 writes the run dir."""
    try:
        return _train(cfg, run_dir)
    except (ConfigError, DataError) as e:
        if is_worker() and rank() == 0:
            write_worker_error(run_dir, e)   # the launching process raises it again
        raise


def _train(cfg: DictConfig, run_dir: Path) -> dict:
    t0 = time.time()
    set_seed(cfg.seed)
    is_main = rank() == 0
    if not torch.cuda.is_available():
        keep_freed_memory()   # each step reuses the last step's pages (reasoning_sft/cpu_allocator.py)
    tokenizer = instantiate(cfg.model.tokenizer)
    examples, card = prepare_examples(cfg, tokenizer)
    if cfg.trainer.resume not in (None, "never", "auto"):   # before this run's card replaces the old one
        check_resumed_data(Path(cfg.trainer.resume), card["training_hash"])
    data_s = time.time() - t0
    train_dataset, collator = examples, None
    if cfg.trainer.packing:   # rows of whole samples, best-fit decreasing (reasoning_sft/packing.py)
        bins, card["packing"] = pack_examples(examples, cfg.trainer.pack_length or cfg.data.max_seq_len, cfg.seed)
        train_dataset, collator = [{"samples": b} for b in bins], PackedCollator()
    if len(train_dataset) < world_size(cfg):
        raise ConfigError(f"trainer.nproc_per_node x nnodes = {world_size(cfg)} processes but only "
                          f"{len(train_dataset)} training {'rows' if cfg.trainer.packing else 'samples'}: "
                          "every rank needs at least one")
    if is_main:
        write_json(run_dir / "data_card.json", card)

    precision, dtype = training_dtype(cfg)
    resumed = cfg.trainer.resume not in (None, "never", "auto")
    wandb_run = init_wandb(cfg, run_dir, "train", {"data_card": card}, resume=resumed) if is_main else None
    try:
        # TrainingArguments before the model: under ZeRO-3 the model is then built partitioned
        # (zero.Init), so no rank ever holds a full 32B copy.
        args = training_arguments(cfg, run_dir, precision, ["wandb"] if wandb_run else ["none"])
        t_model = time.time()
        model = instantiate(cfg.model.network, tokenizer=tokenizer, dtype=dtype, seed=cfg.seed)
        num_params = count_parameters(model)
        base_model, attention = model, None
        if cfg.trainer.packing:
            attention = use_packed_attention(model)   # restored before saving
        if cfg.trainer.loss_chunk_tokens and not cfg.trainer.liger_kernel:
            add_chunked_loss(model, cfg.trainer.loss_chunk_tokens)   # long rows: logits one chunk at a time
        if cfg.peft.enabled:
            from peft import get_peft_model
            model = get_peft_model(model, instantiate(cfg.peft.config))
        trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
        model_s = time.time() - t_model
        first_step = FirstStepTime()
        checkpointing = CheckpointCallback(cfg.trainer.save_total_limit,
                                           seconds_trained(Path(cfg.trainer.resume)) if resumed else 0.0)
        collator = collator or (SequenceParallelCollator(tokenizer, sequence_parallel_size(cfg), cfg.data.max_seq_len)
                                if sequence_parallel_size(cfg) > 1 else
                                DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                             data_collator=collator, callbacks=[checkpointing, first_step],
                             activation_offload=cfg.trainer.activation_offload)
        if not show_bar(cfg):   # our step / total / ETA lines instead of the Trainer's bare dicts
            from transformers.trainer_callback import PrinterCallback
            trainer.remove_callback(PrinterCallback)
            trainer.add_callback(ProgressLog())
        if is_main:
            print_start(cfg, run_dir, card, num_params, args)
        if resumed:
            quiet_tied_weights_warning(base_model)
        t_train = time.time()
        result = trainer.train(resume_from_checkpoint=cfg.trainer.resume if resumed else None)
        session_seconds = time.time() - t_train
        train_seconds = checkpointing.train_seconds()   # the whole run: resumed parts included
        if attention is not None:
            base_model.set_attn_implementation(attention)   # the saved config names a standard one
        write_rank_report(trainer, run_dir)
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        if checkpointing.preempted_at is not None:
            finish_distributed()
            return _finish_preempted(trainer, cfg, run_dir, checkpointing.preempted_at, t0) if is_main else {}
        if is_main:
            with open(run_dir / "metrics.jsonl", "w") as f:
                for entry in trainer.state.log_history:
                    f.write(json.dumps(entry) + "\n")

        save_check = None
        if cfg.trainer.save_final_model:
            save_check = save_final_model(trainer, tokenizer, cfg, run_dir)   # ends the process group
        else:
            finish_distributed()   # what follows is rank 0's alone
        if not is_main:
            return {}
        # Evaluation prompts default to the training format: saved with the model, used below.
        with open_dict(cfg):
            cfg.data.format.system_prompt = card["system_prompt"]
        if cfg.trainer.save_final_model:
            write_model_format(run_dir / "final_model", cfg.data.format.thinking_style, card["system_prompt"],
                               cfg.data.max_seq_len)

        evaluation = {}
        if cfg.eval.after_train:
            generation_budget(cfg, cfg.data.max_seq_len)
            evaluation = run_tasks(eval_model(trainer, tokenizer, cfg, run_dir), tokenizer, cfg, run_dir)
            if wandb_run:
                log_eval(wandb_run, evaluation, run_dir)

        results = {
            "experiment": cfg.experiment_name,
            "model": cfg.model.name, "num_parameters": num_params, "trainable_parameters": trainable,
            "data": card,
            "train": {"steps": trainer.state.global_step, "first_loss": losses[0], "final_loss": losses[-1],
                      "mean_train_loss": mean_logged_loss(trainer.state.log_history, result.training_loss),
                      "train_seconds": round(train_seconds, 1), "this_session_seconds": round(session_seconds, 1),
                      "tokens_seen": card["sequence_tokens"]["total"] * trainer.state.num_train_epochs,
                      "precision": precision, "gradient_accumulation": grad_accumulation(cfg),
                      "world_size": trainer.args.world_size, "data_parallel_size": data_parallel_size(cfg),
                      "sequence_parallel_size": sequence_parallel_size(cfg),   # tokens_seen: real tokens, once each
                      "resumed_from": cfg.trainer.resume if resumed else None},
            "save_check": save_check,
            "eval": evaluation,
            "wandb": {"run_id": wandb_run.id, "dir": wandb_run.dir} if wandb_run else None,
            "startup_seconds": startup_seconds(t0, data_s, model_s, first_step.at),
            "total_seconds": round(time.time() - t0, 1),
        }
        if wandb_run:
            wandb_run.summary.update({"data_hash": card["training_hash"], "total_seconds": results["total_seconds"]})
        if cfg.trainer.save_final_model:
            hc = hydra_runtime()
            results["hub"] = write_and_push(run_dir / "final_model", cfg, results,
                                            list(hc.overrides.task) if hc else [])
        return finish_stage(run_dir, "train", **results)
    finally:
        if wandb_run:
            wandb_run.finish()   # in `finally`: a failed multirun job must not leak into the next


def _finish_preempted(trainer, cfg: DictConfig, run_dir: Path, step: int, t0: float) -> dict:
    print(f"SIGTERM: checkpoint saved at step {step}; resume with the same command plus "
          f"hydra.run.dir={run_dir} trainer.resume=auto", file=sys.stderr)
    return finish_stage(run_dir, "train", status="preempted", experiment=cfg.experiment_name,
                        train={"steps": step, "checkpoint": str(run_dir / "checkpoints" / f"checkpoint-{step}")},
                        eval={}, wandb=None, total_seconds=round(time.time() - t0, 1))


PROBE_TEXT = "Check: 12 + 30 = 42."


def _probe_logits(model, tokenizer) -> torch.Tensor:
    """Logits of a fixed text. Under ZeRO-3 every rank must run it (the forward gathers weights)."""
    ids = tokenizer(PROBE_TEXT, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float().cpu()


def save_final_model(trainer, tokenizer, cfg: DictConfig, run_dir: Path) -> dict | None:
    """Save the full model (gathered from every ZeRO-3 rank) or the LoRA adapter; then, when
    `trainer.verify_save`, reload it in this process and compare its logits with the trained model's.
    A ZeRO-3 save that wrote empty or stale shards fails here instead of at evaluation."""
    out = run_dir / "final_model"
    trained = _probe_logits(trainer.model_wrapped if trainer.is_deepspeed_enabled else trainer.model, tokenizer) \
        if cfg.trainer.verify_save else None
    trainer.save_model(str(out))
    finish_distributed()   # the gathered save was the last collective step; the rest is rank 0's
    if rank() != 0:
        return None
    tokenizer.save_pretrained(str(out))
    if cfg.peft.enabled and cfg.peft.merge_after_train and not trainer.is_deepspeed_enabled:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(run_dir / "merged_model"))
        tokenizer.save_pretrained(str(run_dir / "merged_model"))
    if trained is None:
        return None
    torch.save(trained, run_dir / "final_model_probe_logits.pt")   # a fresh process can compare too
    reloaded = _probe_logits(load_saved_model(cfg, out), tokenizer)
    diff = (reloaded - trained).abs().max().item()
    if diff > 1e-3 * max(1.0, trained.abs().max().item()):
        raise RuntimeError(f"{out}: the saved model's logits differ from the trained model's by {diff:.3g}")
    return {"probe": PROBE_TEXT, "max_abs_logit_diff": diff}


def load_saved_model(cfg: DictConfig, path: Path):
    """The saved final model as a plain (unpartitioned) model: the full model, or base + adapter."""
    from transformers.integrations import unset_hf_deepspeed_config
    unset_hf_deepspeed_config()   # else from_pretrained would partition it again under ZeRO-3
    if cfg.peft.enabled:   # the adapter on the base the config names (a tiny base is rebuilt from its seed)
        from peft import PeftModel
        tokenizer = load_pretrained_tokenizer(str(path))
        base = instantiate(cfg.model.network, tokenizer=tokenizer, dtype=torch.float32, seed=cfg.seed)
        return PeftModel.from_pretrained(base, str(path))
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def eval_model(trainer, tokenizer, cfg: DictConfig, run_dir: Path):
    """The model to evaluate on rank 0: the trained one in memory, or (when it is partitioned or
    sharded across ranks) the saved final model loaded whole."""
    if trainer.args.world_size == 1 and not trainer.is_deepspeed_enabled:
        return trainer.model
    if not cfg.trainer.save_final_model:
        raise ConfigError("eval.after_train=true with several processes needs trainer.save_final_model=true "
                          "(rank 0 evaluates the saved model)")
    return load_saved_model(cfg, run_dir / "final_model")


def write_rank_report(trainer, run_dir: Path) -> None:
    """ranks/rank<N>.json: what this rank held and trained on. Under ZeRO-3 a parameter's local part
    is `ds_tensor`; the optimizer's bytes are the Adam moments of this rank's partition."""
    params = list(trainer.model.parameters())
    local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    full = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
    report = {"rank": trainer.args.process_index, "world_size": trainer.args.world_size,
              "parameters_full": full, "parameters_local": local,
              "optimizer_state_bytes": optimizer_state_bytes(trainer.optimizer),
              "samples_seen": trainer.samples_seen}
    (run_dir / "ranks").mkdir(exist_ok=True)
    write_json(run_dir / "ranks" / f"rank{report['rank']}.json", report)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state tensors on this rank, through the wrappers (accelerate, DeepSpeed)."""
    while not isinstance(optimizer, torch.optim.Optimizer) or (
            hasattr(optimizer, "optimizer") and isinstance(optimizer.optimizer, torch.optim.Optimizer)):
        optimizer = optimizer.optimizer
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if torch.is_tensor(v) and v.dim() > 0)


def print_summary(summary: dict) -> None:
    run_dir = summary["run_dir"]
    print(f"\nrun dir:     {run_dir}")
    print(f"summary:     {run_dir}/summary.json")
    tr = summary["train"]
    if summary["status"] == "preempted":
        print(f"preempted:   checkpoint at step {tr['steps']}: {tr['checkpoint']}")
        return
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

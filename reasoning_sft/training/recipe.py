"""The training recipe, in torchtune's manner: one rank's run as a small class over the library's
parts. `SFTRecipe(cfg, run_dir).run()` reads as the pipeline:

    setup_data  -> the prepare stage's records, tokenized (and packed); data_card.json
    setup_model -> TrainingArguments first (ZeRO-3 then builds the model partitioned), the model,
                   packed attention / chunked loss / LoRA, the Trainer and its callbacks
    fit         -> trainer.train (resumable); trainer_state.json holds the log history
    save        -> final_model/ (gathered under ZeRO-3), reloaded and checked against the trained logits
    evaluate    -> eval.tasks on rank 0, in the training format
    summarize   -> summary.json

train.py validates, resumes and launches; this class is what each rank runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import DataCollatorForSeq2Seq, set_seed

from reasoning_sft.training.checkpoints import CheckpointCallback, check_resumed_data, seconds_trained
from reasoning_sft.training.chunked_loss import add_chunked_loss
from reasoning_sft.config import RunGroups, data_parallel_size, grad_accumulation, parse_groups, training_dtype, world_size
from reasoning_sft.training.cpu_allocator import keep_freed_memory
from reasoning_sft.training.diagnostics import Diagnostics, ProgressLog, print_start, show_bar, startup_seconds
from reasoning_sft.errors import ConfigError
from reasoning_sft.data.formatting import get_style, tokenize_records, training_system_prompt
from reasoning_sft.training.launch import finish_distributed, rank
from reasoning_sft.training.model_card import write_and_push
from reasoning_sft.training.models import count_parameters, load_pretrained_tokenizer, load_saved_model
from reasoning_sft.training.packing import PackedCollator, pack_examples, use_packed_attention
from reasoning_sft.data.selection import prepare_records, token_stats
from reasoning_sft.data.synthetic import trained_shape
from reasoning_sft.evaluation.evaluator import Evaluator
from reasoning_sft.evaluation.generation import HFEngine
from reasoning_sft.evaluation.prompts import write_model_format
from reasoning_sft.data.records import content_hash
from reasoning_sft.rundir import RunContext, finish_stage, write_json
from reasoning_sft.training.reuse import find_finished, link_trained, record_finished, tokens_hash, training_key
from reasoning_sft.training.trainer import SequenceParallelCollator, SFTTrainer, quiet_tied_weights_warning, training_arguments
from reasoning_sft.training.wandb_logging import init_wandb, log_eval


class SFTRecipe:
    """One rank's run. The config is read once here: `self.g` holds its groups typed (config.RunGroups),
    and each part of the library is handed only its own group."""

    def __init__(self, cfg: DictConfig, run_dir: Path, context: RunContext = RunContext()):
        self.cfg, self.run_dir, self.context = cfg, run_dir, context
        self.g: RunGroups = parse_groups(cfg)
        self.is_main = rank() == 0
        self.resumed = self.g.trainer.resume not in (None, "never", "auto", "unfinished")
        self.t0 = time.time()
        self.wandb_run = None

    def run(self) -> dict:
        """The whole rank's run; summary.json's content on rank 0, {} on the others."""
        set_seed(self.g.seed)
        if not torch.cuda.is_available():
            keep_freed_memory()   # each step reuses the last step's pages (reasoning_sft/training/cpu_allocator.py)
        self.setup_data()
        if self.is_main:
            config = {**OmegaConf.to_container(self.cfg, resolve=True), "data_card": self.card}
            self.wandb_run = init_wandb(self.g.logger, config, self.run_dir, "train", self.g.experiment_name,
                                        resume=self.resumed, name=self.context.override_dirname)
        try:
            self.setup_model()
            self.fit()
            if self.preempted():
                finish_distributed()
                return self.finish_preempted() if self.is_main else {}
            self.save()
            if not self.is_main:
                return {}
            self.evaluate()
            return self.summarize()
        finally:
            if self.wandb_run:
                self.wandb_run.finish()   # in `finally`: a failed multirun job must not leak into the next

    def setup_data(self) -> None:
        g, t = self.g, self.g.trainer
        self.tokenizer = instantiate(g.model.tokenizer)
        examples, self.card = prepare_examples(g, self.tokenizer)
        if self.resumed:   # before this run's card replaces the old one
            check_resumed_data(Path(t.resume), self.card["training_hash"])
        self.train_dataset, self.collator = examples, None
        if t.packing:   # rows of whole samples, best-fit decreasing (reasoning_sft/training/packing.py)
            bins, self.card["packing"] = pack_examples(examples, t.pack_length or g.data.max_seq_len, g.seed)
            self.train_dataset, self.collator = [{"samples": b} for b in bins], PackedCollator()
        if len(self.train_dataset) < world_size(t):
            raise ConfigError(f"trainer.nproc_per_node x nnodes = {world_size(t)} processes but only "
                              f"{len(self.train_dataset)} training {'rows' if t.packing else 'samples'}: "
                              "every rank needs at least one")
        if self.is_main:
            write_json(self.run_dir / "data_card.json", self.card)
        self.data_seconds = time.time() - self.t0

    def setup_model(self) -> None:
        g, t, tokenizer = self.g, self.g.trainer, self.tokenizer
        self.precision, dtype = training_dtype(t.precision, g.deepspeed.config is not None)
        # TrainingArguments before the model: under ZeRO-3 the model is then built partitioned
        # (zero.Init), so no rank ever holds a full 32B copy.
        args = training_arguments(g, self.run_dir, self.precision, ["wandb"] if self.wandb_run else ["none"])
        t_model = time.time()
        model = instantiate(g.model.network, tokenizer=tokenizer, dtype=dtype, seed=g.seed)
        self.num_params = count_parameters(model)
        self.base_model, self.attention = model, None
        if t.packing:
            self.attention = use_packed_attention(model)   # restored before saving
        if t.loss_chunk_tokens and not t.liger_kernel:
            add_chunked_loss(model, t.loss_chunk_tokens)   # long rows: logits one chunk at a time
        if g.peft.enabled:
            from peft import get_peft_model
            model = get_peft_model(model, instantiate(g.peft.config))
        self.trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
        self.model_seconds = time.time() - t_model
        self.diagnostics = Diagnostics(self.run_dir)
        self.checkpointing = CheckpointCallback(t.save_total_limit,
                                                seconds_trained(Path(t.resume)) if self.resumed else 0.0)
        sp = t.sequence_parallel_size
        collator = self.collator or (SequenceParallelCollator(tokenizer, sp, g.data.max_seq_len) if sp > 1 else
                                     DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        self.trainer = SFTTrainer(model=model, args=args, train_dataset=self.train_dataset, processing_class=tokenizer,
                                  data_collator=collator, callbacks=[self.checkpointing, self.diagnostics],
                                  samples_seen=self.diagnostics.samples_seen,
                                  activation_offload=t.activation_offload)
        if not show_bar(t.progress_bar):   # our step / total / ETA lines instead of the Trainer's bare dicts
            from transformers.trainer_callback import PrinterCallback
            self.trainer.remove_callback(PrinterCallback)
            self.trainer.add_callback(ProgressLog())
        if self.is_main:
            print_start(g, self.run_dir, self.card, self.num_params, args)
        if self.resumed:
            quiet_tied_weights_warning(self.base_model)

    def fit(self) -> None:
        t_train = time.time()
        self.result = self.trainer.train(resume_from_checkpoint=self.g.trainer.resume if self.resumed else None)
        self.session_seconds = time.time() - t_train
        self.train_seconds = self.checkpointing.train_seconds()   # the whole run: resumed parts included
        if self.attention is not None:
            self.base_model.set_attn_implementation(self.attention)   # the saved config names a standard one
        if self.is_main:   # the Trainer's own state file: log history (loss, lr, grad norm per logging step)
            self.trainer.state.save_to_json(str(self.run_dir / "trainer_state.json"))

    def preempted(self) -> bool:
        return self.checkpointing.preempted_at is not None

    def finish_preempted(self) -> dict:
        step = self.checkpointing.preempted_at
        name = self.checkpointing.signal_name or "SIGTERM"
        on_slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
        notice = on_slurm and name != "SIGTERM"                  # submitit's notice before the time limit
        requeued = on_slurm and name == "SIGTERM" and slurm_requeues_this_job()
        if notice or requeued:
            print(f"{name}: checkpoint saved at step {step}; SLURM job requeued, it continues from there",
                  file=sys.stderr)
        else:
            print(f"{name}: checkpoint saved at step {step}; the same command continues from there "
                  f"(trainer.resume=unfinished, the default), in hydra.run.dir={self.run_dir}", file=sys.stderr)
        summary = self._preempted_summary(step)
        if notice or requeued:
            # End without a result, as submitit's own handler does, so the submitting command keeps waiting
            # for the restarted job, which continues here (trainer.resume=unfinished). After a notice we
            # requeue as that handler would; a preemption SLURM requeues by itself.
            if notice:
                from submitit import JobEnvironment
                JobEnvironment()._requeue(0)
            sys.exit(-1)
        return summary

    def _preempted_summary(self, step: int) -> dict:
        return finish_stage(self.run_dir, "train", status="preempted", experiment=self.g.experiment_name,
                            train={"steps": step,
                                   "checkpoint": str(self.run_dir / "checkpoints" / f"checkpoint-{step}")},
                            eval={}, wandb=None, total_seconds=round(time.time() - self.t0, 1))

    def save(self) -> None:
        """final_model/ (checked), then the training format beside it; on ranks > 0 only the collective part."""
        g = self.g
        self.save_check = None
        if g.trainer.save_final_model:
            self.save_check = save_final_model(self.trainer, self.tokenizer, g, self.run_dir)   # ends the group
        else:
            finish_distributed()   # what follows is rank 0's alone
        if not self.is_main:
            return
        if g.trainer.save_final_model:   # the training format, saved with the model (evaluation reads it)
            write_model_format(self.run_dir / "final_model", g.data.format.thinking_style,
                               self.card["system_prompt"], g.data.max_seq_len)

    def evaluate(self) -> None:
        """eval.tasks on the trained model, in the training format: prompts with the system prompt the
        data decided."""
        self.evaluation, g = {}, self.g
        if g.eval.after_train:
            model = eval_model(self.trainer, g, self.run_dir)
            evaluator = Evaluator(g.eval, g.data.format.thinking_style, self.card["system_prompt"], g.seed,
                                  trained_shape(g.data.source))
            self.evaluation = evaluator.attach(HFEngine(model, self.tokenizer)).run(self.run_dir)
            if self.wandb_run:
                log_eval(self.wandb_run, self.evaluation, self.run_dir)

    def summarize(self) -> dict:
        g, trainer, card = self.g, self.trainer, self.card
        history = trainer.state.log_history
        losses = [e["loss"] for e in history if "loss" in e]
        results = {
            "experiment": g.experiment_name,
            "model": g.model.name, "num_parameters": self.num_params, "trainable_parameters": self.trainable,
            "data": card,
            "train": {"steps": trainer.state.global_step, "first_loss": losses[0], "final_loss": losses[-1],
                      "mean_train_loss": mean_logged_loss(history, self.result.training_loss),
                      "train_seconds": round(self.train_seconds, 1),
                      "this_session_seconds": round(self.session_seconds, 1),
                      "tokens_seen": card["sequence_tokens"]["total"] * trainer.state.num_train_epochs,
                      "precision": self.precision, "gradient_accumulation": grad_accumulation(g.trainer),
                      "world_size": trainer.args.world_size, "data_parallel_size": data_parallel_size(g.trainer),
                      "sequence_parallel_size": g.trainer.sequence_parallel_size,   # tokens_seen: real tokens, once each
                      "resumed_from": g.trainer.resume if self.resumed else None},
            "save_check": self.save_check,
            "eval": self.evaluation,
            "wandb": {"run_id": self.wandb_run.id, "dir": self.wandb_run.dir} if self.wandb_run else None,
            "startup_seconds": startup_seconds(self.t0, self.data_seconds, self.model_seconds,
                                               self.diagnostics.first_step_at),
            "total_seconds": round(time.time() - self.t0, 1),
        }
        if self.wandb_run:
            self.wandb_run.summary.update({"data_hash": card["training_hash"], "total_seconds": results["total_seconds"]})
        if g.trainer.save_final_model:
            results["train"]["training_key"] = training_key(g, card["tokens_hash"])
            results["hub"] = write_and_push(self.run_dir / "final_model", g, g.ablation, results,
                                            list(self.context.overrides))
        summary = finish_stage(self.run_dir, "train", **results)
        if g.trainer.save_final_model:   # a later run of the same training may reuse it (training/reuse.py)
            record_finished(Path(self.cfg.paths.log_dir), results["train"]["training_key"], self.run_dir)
        return summary


def find_reusable(cfg: DictConfig) -> tuple[Path, dict] | None:
    """`trainer.reuse_trained`: the finished run that trained what `cfg` would (training/reuse.py), and this
    run's data card; None when there is none. The records are prepared to name them (seconds)."""
    g = parse_groups(cfg)
    _, card = prepare_examples(g, instantiate(g.model.tokenizer))
    source = find_finished(Path(cfg.paths.log_dir), training_key(g, card["tokens_hash"]))
    return (source, card) if source is not None else None


def run_reused(cfg: DictConfig, run_dir: Path, source: Path, card: dict, context: RunContext) -> dict:
    """The reused training's final_model/ linked into this run dir, evaluated with this run's `eval`
    group; summary.json carries the trained run's figures and says where they come from."""
    t0, g = time.time(), parse_groups(cfg)
    trained = json.loads((source / "summary.json").read_text())
    link_trained(source, run_dir)
    write_json(run_dir / "data_card.json", card)
    print(f"trainer.reuse_trained: {source} trained this model (the same tokens, settings, code and kind of processor); "
          f"evaluating it here instead of training again", file=sys.stderr)
    config = {**OmegaConf.to_container(cfg, resolve=True), "data_card": card}
    wandb_run = init_wandb(g.logger, config, run_dir, "train", g.experiment_name, name=context.override_dirname)
    try:
        evaluation = {}
        if g.eval.after_train:
            model = load_final_model(g, run_dir / "final_model")
            tokenizer = load_pretrained_tokenizer(str(run_dir / "final_model"))
            evaluator = Evaluator(g.eval, g.data.format.thinking_style, card["system_prompt"], g.seed,
                                  trained_shape(g.data.source))
            evaluation = evaluator.attach(HFEngine(model, tokenizer)).run(run_dir)
            if wandb_run:
                log_eval(wandb_run, evaluation, run_dir)
        results = {k: trained.get(k) for k in ("experiment", "model", "num_parameters", "trainable_parameters",
                                                 "save_check", "startup_seconds")}
        return finish_stage(run_dir, "train", **{
            **results, "experiment": g.experiment_name, "data": card,
            "train": {**trained["train"], "reused_from": str(source)}, "eval": evaluation,
            "wandb": {"run_id": wandb_run.id, "dir": wandb_run.dir} if wandb_run else None,
            "total_seconds": round(time.time() - t0, 1)})
    finally:
        if wandb_run:
            wandb_run.finish()


def prepare_examples(g: RunGroups, tokenizer) -> tuple[list[dict], dict]:
    """The prepare stage's records, tokenized with assistant-only labels; the card counts all."""
    data = g.data
    records, card = prepare_records(data, list(g.transforms), g.ablation, g.seed, tokenizer, measure_traces=False)
    examples, counts = tokenize_records(records, tokenizer, get_style(data.format.thinking_style),
                                        data.max_seq_len, data.overflow, data.format.system_prompt)
    if not examples:
        raise ConfigError(f"data.max_seq_len={data.max_seq_len}: too small for any of the "
                          f"{len(records)} samples of data={data.name} ({dict(counts)})")
    card["tokenization"] = dict(counts)
    card["system_prompt"] = training_system_prompt(records, data.format.system_prompt)
    traces = [e["thinking_tokens"] for e in examples if e["thinking_tokens"] is not None]
    card["trace_tokens"] = token_stats(traces) if traces else {}   # in context, of the kept samples
    lengths = [len(e["input_ids"]) for e in examples]
    card["sequence_tokens"] = token_stats(lengths)
    card["supervised_tokens"] = sum(e["supervised_tokens"] for e in examples)
    card["examples"] = len(examples)
    kept = {e["id"] for e in examples}   # names the exact training set (tokenization may drop some)
    card["training_hash"] = card["content_hash"] if len(kept) == len(records) else \
        content_hash(r for r in records if r.id in kept)
    card["tokens_hash"] = tokens_hash(examples)   # what the model sees (trainer.reuse_trained's key)
    return [{"input_ids": e["input_ids"], "labels": e["labels"], "sample_index": i}
            for i, e in enumerate(examples)], card


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


PROBE_TEXT = "Check: 12 + 30 = 42."


def _probe_logits(model, tokenizer) -> torch.Tensor:
    """Logits of a fixed text. Under ZeRO-3 every rank must run it (the forward gathers weights)."""
    ids = tokenizer(PROBE_TEXT, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float().cpu()


def save_final_model(trainer, tokenizer, g: RunGroups, run_dir: Path) -> dict | None:
    """Save the full model (gathered from every ZeRO-3 rank) or the LoRA adapter; then, when
    `trainer.verify_save`, reload it in this process and compare its logits with the trained model's.
    A ZeRO-3 save that wrote empty or stale shards fails here instead of at evaluation."""
    out = run_dir / "final_model"
    trained = _probe_logits(trainer.model_wrapped if trainer.is_deepspeed_enabled else trainer.model, tokenizer) \
        if g.trainer.verify_save else None
    trainer.save_model(str(out))
    finish_distributed()   # the gathered save was the last collective step; the rest is rank 0's
    if rank() != 0:
        return None
    tokenizer.save_pretrained(str(out))
    if g.peft.enabled and g.peft.merge_after_train and not trainer.is_deepspeed_enabled:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(run_dir / "merged_model"))
        tokenizer.save_pretrained(str(run_dir / "merged_model"))
    if trained is None:
        return None
    torch.save(trained, run_dir / "final_model_probe_logits.pt")   # a fresh process can compare too
    reloaded = _probe_logits(load_final_model(g, out), tokenizer)
    diff = (reloaded - trained).abs().max().item()
    if diff > 1e-3 * max(1.0, trained.abs().max().item()):
        raise RuntimeError(f"{out}: the saved model's logits differ from the trained model's by {diff:.3g}")
    return {"probe": PROBE_TEXT, "max_abs_logit_diff": diff}


def load_final_model(g: RunGroups, path: Path):
    """The saved final model as a plain (unpartitioned) float32 model: the full model, or the adapter
    on the base the config names (a tiny base is rebuilt from its seed), not merged."""
    base = None
    if g.peft.enabled:
        base = instantiate(g.model.network, tokenizer=load_pretrained_tokenizer(str(path)), dtype=torch.float32,
                           seed=g.seed)
    return load_saved_model(path, "final_model", dtype=torch.float32, adapter_base=base, merge_adapter=False)[0]


def eval_model(trainer, g: RunGroups, run_dir: Path):
    """The model to evaluate on rank 0: the trained one in memory, or (when it is partitioned or
    sharded across ranks) the saved final model loaded whole."""
    if trainer.args.world_size == 1 and not trainer.is_deepspeed_enabled:
        return trainer.model
    if not g.trainer.save_final_model:
        raise ConfigError("eval.after_train=true with several processes needs trainer.save_final_model=true "
                          "(rank 0 evaluates the saved model)")
    return load_final_model(g, run_dir / "final_model")


def slurm_requeues_this_job() -> bool:
    """Whether the SIGTERM this SLURM job got is SLURM requeueing it (`scontrol requeue`, a preemption
    under PreemptMode=REQUEUE) rather than ending it (`scancel`): by the time the signal arrives SLURM
    has counted the restart, so the job's Restarts is one more than this attempt's SLURM_RESTART_COUNT
    (measured on slurm 22.05: 1 vs 0 after `scontrol requeue`, 0 vs 0 after `scancel`)."""
    import re
    import subprocess
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False      # cannot tell: the job ends with its status, the same command continues it
    restarts = re.search(r"\bRestarts=(\d+)", out)
    return restarts is not None and int(restarts.group(1)) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


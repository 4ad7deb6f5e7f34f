"""The Hugging Face Trainer as this project drives it: `TrainingArguments` from the config (DeepSpeed
with explicit batch numbers, Ulysses sequence parallelism through accelerate), the collator for
sequence-parallel batches, and `SFTTrainer`, which notes the samples each rank trained on and can
keep activations in CPU memory.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from reasoning_sft.config import RunGroups, grad_accumulation
from reasoning_sft.training.diagnostics import show_bar


def training_arguments(g: RunGroups, run_dir: Path, precision: str, report_to: list[str]) -> TrainingArguments:
    """The Trainer's arguments from the run's typed groups (trainer, deepspeed, the model's attention)."""
    t = g.trainer
    ds_config = None
    if g.deepspeed.config is not None:
        ds_config = copy.deepcopy(dict(g.deepspeed.config))
        # Explicit numbers, never "auto": DeepSpeed checks global = micro x accumulation x world.
        ds_config.update(train_micro_batch_size_per_gpu=t.micro_batch_size,
                         gradient_accumulation_steps=grad_accumulation(t),
                         train_batch_size=t.global_batch_size if t.sequence_parallel_size == 1 else "auto",
                         bf16={"enabled": precision == "bf16"}, fp16={"enabled": precision == "fp16"})
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=grad_accumulation(t),
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
        report_to=report_to, run_name=g.experiment_name,
        seed=g.seed, data_seed=g.seed,
        use_cpu=not torch.cuda.is_available(),   # on CPU, without it world_size reads 1 on every rank
        deepspeed=ds_config,
        dataloader_num_workers=t.dataloader_num_workers, train_sampling_strategy=t.sampling,
        remove_unused_columns=False, disable_tqdm=not show_bar(t.progress_bar),
        parallelism_config=ulysses_config(t.sequence_parallel_size, g.model.network.get("attn_implementation", "sdpa")),
    )


def ulysses_config(sp: int, attention: str):
    """DeepSpeed Ulysses sequence parallelism through accelerate (transformers' integration): each
    sequence is split over `trainer.sequence_parallel_size` GPUs with the model's `attention`; None when
    it is 1."""
    if sp == 1:
        return None
    import deepspeed
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils import DeepSpeedSequenceParallelConfig
    deepspeed.init_distributed()   # Ulysses builds its groups on deepspeed.comm before the engine would
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
    """transformers.Trainer that notes which samples this rank trained on into `samples_seen` (the
    Diagnostics callback's list: the rank report proves the ranks' shares are disjoint and cover the
    data), and can keep activations in CPU memory."""

    def __init__(self, *args, samples_seen: list[int], activation_offload: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples_seen = samples_seen
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

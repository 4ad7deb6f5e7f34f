"""Cross-entropy in token chunks: the (tokens x vocab) logits of a long row are never held at once.

A causal LM's forward with labels builds the logits of every position, upcasts them to fp32 and
takes a log-softmax: at 32k tokens that is 32k x 152k x 4 bytes = 20 GB for Qwen2.5 (twice, with
the gradient), the largest tensor of a long-trace step (`python -m reasoning_sft.plan`). Here the
model's forward is wrapped so that, in training with labels, it runs the backbone, keeps only the
positions that have a label, and scores them `chunk_tokens` at a time: each chunk's logits are made,
reduced to a summed cross-entropy and dropped; backward recomputes them chunk by chunk
(activation checkpointing), so one chunk's logits live at a time. The loss is the model's own:
summed over labelled tokens, divided by `num_items_in_batch` (the Trainer's count over the
accumulated batch) or by the labelled tokens of the row.

Rows with at most `chunk_tokens` labelled positions, generation, evaluation and pre-shifted labels
(sequence parallelism, whose logits are already split over GPUs) go through the model's own forward.
On a GPU, Liger's fused linear cross-entropy (`trainer.liger_kernel`) does the same in one kernel and
takes precedence. Models that scale or soft-cap their logits keep their own forward.
"""

from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutputWithPast

_SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier")


def _summed_nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def same_on_every_rank(chunks: int, device) -> int:
    """Under ZeRO-3 each call of the LM head gathers its weight, a collective: every rank must make
    as many calls as the others, so all take the largest chunk count (one small all-reduce)."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
    if not (torch.distributed.is_available() and torch.distributed.is_initialized() and is_deepspeed_zero3_enabled()):
        return chunks
    most = torch.tensor([chunks], device=device)
    torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
    return int(most.item())


def add_chunked_loss(model, chunk_tokens: int) -> bool:
    """Wrap `model.forward` (an instance attribute: DDP, DeepSpeed and PEFT still call it through
    their own forward). Returns False, leaving the model as it is, when its logits are scaled."""
    text_config = model.config.get_text_config()
    if any(getattr(text_config, key, None) is not None for key in _SCALED_LOGITS):
        return False
    original_forward = model.forward

    @functools.wraps(type(model).forward)   # the signature generate() and the Trainer inspect
    def forward(self, *args, labels=None, num_items_in_batch=None, **kwargs):
        if labels is None or not self.training or "shift_labels" in kwargs:
            return original_forward(*args, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs)
        targets = labels[:, 1:]                               # tokens < n predict n, as ForCausalLMLoss
        labelled = targets != -100
        count = int(labelled.sum())
        chunks = same_on_every_rank(-(-count // chunk_tokens), labels.device)
        if chunks <= 1:
            return original_forward(*args, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][labelled]
        targets = targets[labelled].to(hidden.device)
        head = self.get_output_embeddings()
        total = sum(checkpoint(_summed_nll, head, hidden[i:i + chunk_tokens], targets[i:i + chunk_tokens],
                               use_reentrant=False)
                    for i in range(0, chunks * chunk_tokens, chunk_tokens))   # trailing chunks may be empty
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        if torch.is_tensor(denominator):
            denominator = denominator.to(total.device)
        return CausalLMOutputWithPast(loss=total / denominator)

    model.forward = types.MethodType(forward, model)
    return True

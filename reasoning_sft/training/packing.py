"""Padding-free packing for long traces, exact on every attention backend, with no T x T mask.

1. `pack_examples`: best-fit-decreasing placement of tokenized samples into bins of at most
   `pack_length` tokens (ties broken by a seeded order, so the bins are the same every run and epoch).
   A bin is one training row: batch sizes count bins when packing is on.
2. `PackedCollator`: transformers' own `DataCollatorWithFlattening` (return_flash_attn_kwargs=True):
   the bins of a micro batch become ONE flat row, position ids restarting at 0 per sample, the first
   label of each sample -100 (nothing is predicted across a boundary), and `cu_seq_lens_q/k` (sample
   boundaries). The wrapper adds only the project's sample indices. Every computed token is real.
3. Attention never crosses a sample boundary and never pays for the masked-out part: on a GPU with
   flash-attn, `flash_attention_2` takes `cu_seq_lens` natively (varlen kernels); elsewhere the
   `packed_sdpa` implementation registered here runs causal SDPA per sample (cost sum L_i^2, with
   `enable_gqa` instead of copied K/V heads). Its mask function builds no mask for a flat packed row:
   transformers would otherwise detect the restarted position ids and build a dense (1, 1, T, T)
   mask (1 GiB at T = 32k) that the per-sample kernel never reads. Batches with an attention mask
   (padding) get SDPA's own mask as before.

Under the Trainer (`use_cache=False`) transformers itself masks packed sequences it detects from
restarted position ids, exactly but with that dense mask; with `use_cache=True` and no mask it does
not. The packing tests compare every path with running each sample alone (1e-6).
"""

from __future__ import annotations

import bisect
import random
from typing import Any

import torch
import torch.nn.functional as F

from reasoning_sft.errors import ConfigError

PACKED_SDPA = "packed_sdpa"


def pack_examples(examples: list[dict], pack_length: int, seed: int) -> tuple[list[list[dict]], dict]:
    """Best-fit decreasing: longest first, each into the fullest bin it fits. Returns bins (in a
    seeded order) and stats. An example longer than `pack_length` cannot be placed: an error."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)                                   # seeded tie-break among equal lengths
    order.sort(key=lambda i: -len(examples[i]["input_ids"]))
    too_long = [i for i in order if len(examples[i]["input_ids"]) > pack_length]
    if too_long:
        raise ConfigError(f"trainer.pack_length={pack_length}: {len(too_long)} samples are longer "
                          f"(longest {len(examples[too_long[0]]['input_ids'])} tokens); set it >= data.max_seq_len")
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []                     # (remaining capacity, bin index), sorted
    for i in order:
        n = len(examples[i]["input_ids"])
        j = bisect.bisect_left(free, (n, -1))            # the tightest bin that still fits
        if j < len(free):
            cap, b = free.pop(j)
            bins[b].append(i)
            bisect.insort(free, (cap - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (pack_length - n, len(bins) - 1))
    rng.shuffle(bins)
    tokens = sum(len(e["input_ids"]) for e in examples)
    stats = {"bins": len(bins), "pack_length": pack_length, "samples": len(examples),
             "fill": round(tokens / (len(bins) * pack_length), 4) if bins else 0.0}
    return [[examples[i] for i in b] for b in bins], stats


class PackedCollator:
    """A micro batch of bins -> one flat row: transformers' `DataCollatorWithFlattening`, plus the
    indices of the samples (for per-sample accounting)."""

    def __init__(self):
        from transformers import DataCollatorWithFlattening
        self.flatten = DataCollatorWithFlattening(return_flash_attn_kwargs=True, return_position_ids=True,
                                                  separator_id=-100)

    def __call__(self, bins: list[dict]) -> dict[str, Any]:
        samples = [s for b in bins for s in b["samples"]]
        batch = self.flatten([{"input_ids": list(s["input_ids"]), "labels": list(s["labels"])} for s in samples],
                             return_tensors="pt")
        if "sample_index" in samples[0]:
            batch["sample_index"] = torch.tensor([s["sample_index"] for s in samples])
        return batch


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """Causal SDPA per packed sample (query/key/value: batch 1 x heads x tokens x dim)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError("packed attention expects one flat row (batch size 1)")
    gqa = query.shape[1] != key.shape[1]                 # grouped-query attention: K/V heads shared, not copied
    bounds = cu.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                           dropout_p=dropout if module.training else 0.0, scale=scaling,
                                           enable_gqa=gqa)
            for a, b in zip(bounds, bounds[1:])]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def packed_sdpa_mask(*args, attention_mask=None, **kwargs):
    """No mask for a flat row without padding (the attention splits it by `cu_seq_lens`, or runs
    causal SDPA): transformers' dense packed-sequence mask is never built. SDPA's mask otherwise."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_packed_attention() -> None:
    """Make `packed_sdpa` a transformers attention implementation, with a mask function that builds
    no T x T mask for packed rows."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, packed_sdpa_mask)


def use_packed_attention(model) -> str:
    """Switch the model to an attention that honours `cu_seq_lens`; returns the one it had.
    flash_attention_2/3 already do (varlen kernels) and are kept."""
    previous = model.config._attn_implementation
    if previous.startswith("flash_attention"):
        return previous
    register_packed_attention()
    model.set_attn_implementation(PACKED_SDPA)
    return previous

"""Padding-free packing for long traces, exact on every attention backend.

1. `pack_examples`: best-fit-decreasing placement of tokenized samples into bins of at most
   `pack_length` tokens (ties broken by a seeded order, so the bins are the same every run and epoch).
   A bin is one training row: batch sizes count bins when packing is on.
2. `PackedCollator`: the bins of a micro batch become ONE flat row: samples concatenated, position ids
   restarting at 0 for each, the first label of each sample set to -100 (the token before it belongs to
   another sample, so nothing predicts across a boundary), and `cu_seq_lens` (sample boundaries) passed
   to the attention. Every computed token is a real one.
3. Attention never crosses a sample boundary and never pays for the masked-out part: on a GPU with
   flash-attn, `flash_attention_2` takes `cu_seq_lens` natively (varlen kernels); elsewhere the
   `packed_sdpa` implementation registered here runs causal SDPA per sample (cost sum L_i^2, not
   (sum L_i)^2, and no dense mask). Without `cu_seq_lens` (generation) it is plain SDPA.

transformers 5 with SDPA/eager and restarted position ids but no mask lets a packed sample attend to
the one before it (FIELD_NOTES: logits off by ~0.5); this module is why ours are equal to 1e-6.
"""

from __future__ import annotations

import bisect
import random
from typing import Any

import torch
import torch.nn.functional as F

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
        raise ValueError(f"trainer.pack_length={pack_length}: {len(too_long)} samples are longer "
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
    """A micro batch of bins -> one flat row with per-sample positions, labels and boundaries."""

    def __call__(self, bins: list[dict]) -> dict[str, Any]:
        samples = [s for b in bins for s in b["samples"]]
        input_ids, labels, positions, bounds = [], [], [], [0]
        for s in samples:
            ids = list(s["input_ids"])
            lab = list(s["labels"])
            lab[0] = -100                                # never predicted from the previous sample
            input_ids += ids
            labels += lab
            positions += range(len(ids))
            bounds.append(bounds[-1] + len(ids))
        cu = torch.tensor(bounds, dtype=torch.int32)
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        batch = {"input_ids": torch.tensor([input_ids]), "labels": torch.tensor([labels]),
                 "position_ids": torch.tensor([positions]),
                 "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
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
    groups = query.shape[1] // key.shape[1]
    if groups > 1:                                       # grouped-query attention: share K/V heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    bounds = cu.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                           dropout_p=dropout if module.training else 0.0, scale=scaling)
            for a, b in zip(bounds, bounds[1:])]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def register_packed_attention() -> None:
    """Make `packed_sdpa` a transformers attention implementation (with SDPA's mask for generation)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)


def use_packed_attention(model) -> str:
    """Switch the model to an attention that honours `cu_seq_lens`; returns the one it had.
    flash_attention_2/3 already do (varlen kernels) and are kept."""
    previous = model.config._attn_implementation
    if previous.startswith("flash_attention"):
        return previous
    register_packed_attention()
    model.set_attn_implementation(PACKED_SDPA)
    return previous

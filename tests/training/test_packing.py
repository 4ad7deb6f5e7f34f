"""Padding-free packing: placement, the flat row, and exactness against running each sample alone
(loss, gradients, logits) for tiny Qwen2 and Llama, then under 2-rank ZeRO-3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reasoning_sft.errors import ConfigError
from reasoning_sft.training.models import build_tiny_model
from reasoning_sft.training.packing import PACKED_SDPA, PackedCollator, pack_examples, use_packed_attention
from test_distributed import BASE, finish_ok, losses, train_cli


def _samples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(lengths):
        ids = torch.randint(10, 400, (n,), generator=g).tolist()
        labels = [-100] * min(3, n - 1) + ids[min(3, n - 1):]        # a prompt part without loss
        out.append({"input_ids": ids, "labels": labels, "sample_index": i})
    return out


def test_best_fit_decreasing_places_every_sample_once_within_capacity():
    lengths = [int(x) for x in torch.randint(5, 500, (300,), generator=torch.Generator().manual_seed(1))]
    examples = _samples(lengths)
    bins, stats = pack_examples(examples, 512, seed=3)
    placed = sorted(s["sample_index"] for b in bins for s in b)
    assert placed == list(range(300))
    assert all(sum(len(s["input_ids"]) for s in b) <= 512 for b in bins)
    lower_bound = -(-sum(lengths) // 512)
    assert stats["bins"] <= lower_bound + 2 and stats["fill"] > 0.95     # BFD is near-optimal here
    again, _ = pack_examples(examples, 512, seed=3)
    other, _ = pack_examples(examples, 512, seed=4)
    ids = lambda bs: [[s["sample_index"] for s in b] for b in bs]
    assert ids(again) == ids(bins) and ids(other) != ids(bins)           # seeded, reproducible
    with pytest.raises(ConfigError, match="trainer.pack_length=100: 1 samples are longer .longest 150"):
        pack_examples(_samples([50, 150]), 100, seed=0)


def test_the_flat_row_restarts_positions_and_masks_boundaries():
    samples = _samples([4, 6, 3])
    batch = PackedCollator()([{"samples": samples[:2]}, {"samples": samples[2:]}])
    assert batch["input_ids"].shape == (1, 13)                          # no padding at all
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2]
    assert batch["cu_seq_lens_q"].tolist() == [0, 4, 10, 13] and batch["max_length_q"] == 6
    labels = batch["labels"][0].tolist()
    assert labels[0] == labels[4] == labels[10] == -100                 # nothing predicts across a boundary
    assert batch["sample_index"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_packed_loss_gradients_and_logits_equal_one_by_one(tiny_tokenizer, architecture):
    model = build_tiny_model(tiny_tokenizer, architecture=architecture, seed=0)
    samples = _samples([37, 120, 5, 64, 200])
    targets = [sum(x != -100 for x in s["labels"][1:]) for s in samples]

    model.zero_grad()
    alone_logits, loss_sum = [], 0.0
    for s, n in zip(samples, targets):
        out = model(input_ids=torch.tensor([s["input_ids"]]), labels=torch.tensor([s["labels"]]))
        (out.loss * n / sum(targets)).backward()          # token-weighted, as one batch of all of them
        loss_sum += out.loss.item() * n
        alone_logits.append(out.logits[0].detach())
    alone_grads = {k: p.grad.clone() for k, p in model.named_parameters()}

    model.zero_grad()
    assert use_packed_attention(model) == "sdpa" and model.config._attn_implementation == PACKED_SDPA
    batch = PackedCollator()([{"samples": samples[:3]}, {"samples": samples[3:]}])
    batch.pop("sample_index")
    out = model(**batch)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(loss_sum / sum(targets), abs=1e-5)
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, alone_grads[k], atol=1e-6), k
    bounds = batch["cu_seq_lens_q"].tolist()
    for (a, b), ref in zip(zip(bounds, bounds[1:]), alone_logits):
        assert torch.allclose(out.logits[0, a:b], ref, atol=1e-5)

    # The control: the same flat row through plain SDPA lets samples see each other, and it shows.
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
    assert (plain[bounds[1]:bounds[2]] - alone_logits[1]).abs().max() > 1e-2


def test_packed_rows_build_no_dense_mask_and_share_kv_heads(tiny_tokenizer):
    """The mask function of packed_sdpa builds nothing for a flat packed row; plain SDPA under the
    Trainer's use_cache=False builds a dense (1, 1, T, T) mask for the same row."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    from reasoning_sft.training.packing import packed_sdpa_attention, packed_sdpa_mask, register_packed_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    register_packed_attention()
    masks, kv_heads = [], []

    def spy(inner):
        def attention(module, query, key, value, attention_mask, **kwargs):
            masks.append(attention_mask)
            kv_heads.append((query.shape[1], key.shape[1]))
            return inner(module, query, key, value, attention_mask, **kwargs)
        return attention
    AttentionInterface.register("spy_packed", spy(packed_sdpa_attention))
    ALL_MASK_ATTENTION_FUNCTIONS.register("spy_packed", packed_sdpa_mask)
    AttentionInterface.register("spy_sdpa", spy(sdpa_attention_forward))
    ALL_MASK_ATTENTION_FUNCTIONS.register("spy_sdpa", ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model = build_tiny_model(tiny_tokenizer, seed=0)   # 4 query heads, 2 KV heads
    model.config.use_cache = False                      # as under the Trainer
    batch = PackedCollator()([{"samples": _samples([30, 50, 20])}])
    batch.pop("sample_index")
    model.set_attn_implementation("spy_packed")
    packed = model(**batch).logits
    assert masks and all(m is None for m in masks)                  # no T x T mask, in any layer
    assert set(kv_heads) == {(4, 2)}                                # K/V heads shared (enable_gqa), not copied
    masks.clear()
    model.set_attn_implementation("spy_sdpa")
    dense = model(**{k: v for k, v in batch.items() if k in ("input_ids", "position_ids", "labels")}).logits
    assert masks[0] is not None and tuple(masks[0].shape) == (1, 1, 100, 100)
    assert torch.allclose(packed, dense, atol=1e-5)                 # same result, without the mask


def test_packing_config_errors(make_cfg):
    from reasoning_sft.config import validate_train_config
    with pytest.raises(ConfigError, match="trainer.sampling='group_by_length': expected 'random' with trainer.packing"):
        validate_train_config(make_cfg(["trainer.packing=true", "trainer.sampling=group_by_length"]))
    with pytest.raises(ConfigError, match=r"trainer.pack_length=64: expected null or an integer >= data.max_seq_len"):
        validate_train_config(make_cfg(["trainer.packing=true", "trainer.pack_length=64"]))


@pytest.mark.slow
@pytest.mark.ranks
def test_packed_training_under_zero3_matches_one_process(make_cfg, tmp_path):
    from reasoning_sft.train import run_training
    packed = BASE + ["trainer.packing=true", "data.max_seq_len=256"]
    # ZeRO-3 with the chunked loss (64 tokens a chunk) against one process with the model's own loss
    started = train_cli(tmp_path / "zero3", packed + ["trainer.micro_batch_size=1", "trainer.nproc_per_node=2",
                                                      "deepspeed=zero3", "logger=none", "trainer.loss_chunk_tokens=64"])
    one = run_training(make_cfg(packed + ["trainer.micro_batch_size=2", "logger=none", "trainer.loss_chunk_tokens=0"]))
    two = finish_ok(started, tmp_path / "zero3")
    one_dir, two_dir = Path(one["run_dir"]), tmp_path / "zero3"
    assert two["data"]["packing"] == one["data"]["packing"] and one["data"]["packing"]["fill"] > 0.7
    l1, l2 = losses(one_dir), losses(two_dir)
    assert sorted(l2) == [1, 2, 3, 4]
    for step in l1:
        assert l2[step] == pytest.approx(l1[step], abs=2e-4), step
    ranks = [json.loads((two_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert not set(ranks[0]["samples_seen"]) & set(ranks[1]["samples_seen"])
    # Each optimizer step trained on 4 rows of whole samples (2 ranks x 1 row x 2 accumulation).
    rows = one["data"]["packing"]["bins"]
    assert len(ranks[0]["samples_seen"]) + len(ranks[1]["samples_seen"]) > 16 and rows < 64
    # the saved model names a standard attention: it loads anywhere without this package
    assert PACKED_SDPA not in (two_dir / "final_model" / "config.json").read_text()


def test_activation_offload_trains_identically_and_liger_needs_a_gpu(make_cfg, tmp_path):
    from reasoning_sft.train import run_training
    small = ["data.source.num_problems=32", "trainer.max_steps=3", "trainer.global_batch_size=4",
             "trainer.micro_batch_size=4", "trainer.logging_steps=1", "trainer.learning_rate=1e-3",
             "logger=none", "trainer.save_final_model=false"]
    import signal
    before = signal.getsignal(signal.SIGTERM)
    plain = run_training(make_cfg(small))
    assert signal.getsignal(signal.SIGTERM) == before    # after training SIGTERM acts as usual again
    plain_losses = losses(Path(plain["run_dir"]))
    offloaded = run_training(make_cfg(small + ["trainer.activation_offload=true"]))
    assert losses(Path(offloaded["run_dir"])) == pytest.approx(plain_losses, abs=1e-6)
    with pytest.raises(ConfigError, match="trainer.liger_kernel=true: needs a GPU and `pip install liger-kernel`"):
        run_training(make_cfg(small + ["trainer.liger_kernel=true"]))

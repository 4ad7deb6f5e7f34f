"""The chunked cross-entropy is the model's own loss, with the logits of a long row never held at once."""

from __future__ import annotations

import pytest
import torch

from reasoning_sft.training.chunked_loss import add_chunked_loss
from reasoning_sft.training.models import build_tiny_model
from reasoning_sft.training.packing import PackedCollator, use_packed_attention
from test_packing import _samples


def _loss_and_grads(model, batch, **extra):
    model.zero_grad()
    out = model(**batch, **extra)
    out.loss.backward()
    return out, {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_chunked_loss_and_gradients_equal_the_models_own(tiny_tokenizer, architecture):
    model = build_tiny_model(tiny_tokenizer, architecture=architecture, seed=0)
    use_packed_attention(model)
    batch = PackedCollator()([{"samples": _samples([37, 120, 5, 64, 200])}])
    batch.pop("sample_index")
    model.train()
    own, own_grads = _loss_and_grads(model, batch)
    own_sum, _ = _loss_and_grads(model, batch, num_items_in_batch=torch.tensor(1000))
    assert own.logits is not None

    assert add_chunked_loss(model, 50)                      # 414 labelled tokens: 9 chunks
    chunked, grads = _loss_and_grads(model, batch)
    assert chunked.logits is None                           # never built for the whole row
    assert chunked.loss.item() == pytest.approx(own.loss.item(), abs=1e-6)
    for k, g in grads.items():
        assert torch.allclose(g, own_grads[k], atol=1e-6), k
    # The Trainer's count over the accumulated batch divides the sum, as in the model's loss.
    chunked_sum, _ = _loss_and_grads(model, batch, num_items_in_batch=torch.tensor(1000))
    assert chunked_sum.loss.item() == pytest.approx(own_sum.loss.item(), abs=1e-6)

    # Generation and evaluation keep the model's own forward: logits as before.
    model.eval()
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]
    # A row with at most chunk_tokens labelled tokens also goes through the model's own forward.
    model.train()
    short = PackedCollator()([{"samples": _samples([20, 20])}])
    short.pop("sample_index")
    assert model(**short).logits is not None


def test_models_that_scale_their_logits_keep_their_own_loss(tiny_tokenizer):
    model = build_tiny_model(tiny_tokenizer, seed=0)
    model.config.logit_scale = 0.5
    forward = model.forward
    assert not add_chunked_loss(model, 50) and model.forward == forward

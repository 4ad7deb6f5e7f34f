"""Generation, one primitive for every caller: `generate_ids` continues token-id contexts on the
Hugging Face model (left-padded batch, KV cache) or on a vLLM engine (reasoning_sft.evaluation.vllm_engine
brings its own `generate_ids`); the HF / vLLM split lives here and nowhere else. Plain generation
(`generate`) and s1's budget forcing (budget_forcing.py) are built on it.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def generate_ids(model, tokenizer, contexts: list[list[int]], max_new_tokens: int,
                 stop_strings: list[str] | None = None, sampling: dict | None = None) -> list[tuple[list[int], bool]]:
    """Greedy (or `sampling`: do_sample, temperature, top_p) continuation of each context in one batch.
    Returns per row the new ids without padding or end-of-turn token, and whether the row ended with
    the end-of-turn token."""
    if hasattr(model, "generate_ids"):          # the vLLM engine
        return model.generate_ids(contexts, max_new_tokens, stop_strings, sampling)
    pad = tokenizer.pad_token_id
    width = max(len(c) for c in contexts)
    input_ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=model.device)
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=model.device)
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             use_cache=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
                             stop_strings=stop_strings, tokenizer=tokenizer if stop_strings else None,
                             **(sampling or {"do_sample": False}))
    finally:
        model.train(was_training)
    rows = []
    for row in out[:, width:].tolist():
        ended = tokenizer.eos_token_id in row
        if ended:
            row = row[: row.index(tokenizer.eos_token_id)]
        elif stop_strings:
            while row and row[-1] == pad:     # rows that stopped on a stop string are filled with padding
                row.pop()
        rows.append((row, ended))
    return rows


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
             sampling: dict | None = None) -> list[tuple[str, int]]:
    """Plain generation for rendered prompts, `batch_size` at a time (a vLLM engine takes them all at
    once: it batches itself). Returns (text up to the end of turn, generated tokens)."""
    contexts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    step = len(contexts) if hasattr(model, "generate_ids") else batch_size
    results = []
    for i in range(0, len(contexts), max(step, 1)):
        for ids, _ in generate_ids(model, tokenizer, contexts[i:i + step], max_new_tokens, sampling=sampling):
            results.append((tokenizer.decode(ids, skip_special_tokens=False), len(ids)))
    return results


def sampling_kwargs(cfg) -> dict | None:
    """`generate` kwargs for `eval.temperature` > 0 (seeded by `seed`), None for greedy."""
    temperature = cfg.eval.temperature
    if not temperature:
        return None
    torch.manual_seed(cfg.seed)
    return {"do_sample": True, "temperature": temperature, "top_p": cfg.eval.top_p}

"""Generation, one primitive for every caller: an engine's `generate_ids` continues token-id contexts.
`HFEngine` runs it on a Hugging Face model (left-padded batch, KV cache); `VLLMEngine`
(reasoning_sft.evaluation.vllm_engine) on vLLM's engine. Both satisfy `engines.Engine`, so plain
generation (`generate`) and s1's budget forcing (budget_forcing.py) never ask which one they hold.
"""

from __future__ import annotations

import torch


class HFEngine:
    """A loaded transformers model as a generation engine (`eval.backend=hf`)."""
    batches_itself = False      # callers feed it `eval.batch_size` contexts at a time

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.hf_model = model

    @torch.no_grad()
    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None) -> list[tuple[list[int], bool]]:
        """Greedy (or `sampling`: do_sample, temperature, top_p) continuation of each context in one batch.
        Returns per row the new ids without padding or end-of-turn token, and whether the row ended with
        the end-of-turn token."""
        model, tokenizer = self.model, self.tokenizer
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


def generate(engine, prompts: list[str], max_new_tokens: int, batch_size: int,
             sampling: dict | None = None) -> list[tuple[str, int]]:
    """Plain generation for rendered prompts, `batch_size` at a time (an engine that batches itself,
    vLLM, takes them all at once). Returns (text up to the end of turn, generated tokens)."""
    tokenizer = engine.tokenizer
    contexts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    step = len(contexts) if engine.batches_itself else batch_size
    results = []
    for i in range(0, len(contexts), max(step, 1)):
        for ids, _ in engine.generate_ids(contexts[i:i + step], max_new_tokens, sampling=sampling):
            results.append((tokenizer.decode(ids, skip_special_tokens=False), len(ids)))
    return results


def sampling_kwargs(temperature: float, top_p: float, seed: int) -> dict | None:
    """`generate` kwargs for `eval.temperature` > 0 (seeded by `seed`), None for greedy."""
    if not temperature:
        return None
    torch.manual_seed(seed)
    return {"do_sample": True, "temperature": temperature, "top_p": top_p}

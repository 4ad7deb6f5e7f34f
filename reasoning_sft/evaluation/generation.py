"""Generation, one primitive for every caller: an engine's `generate_ids` continues token-id contexts.
`HFEngine` runs it on a Hugging Face model (left-padded batch, KV cache); `VLLMEngine`
(reasoning_sft.evaluation.vllm_engine) on vLLM's engine. Both satisfy `engines.Engine`, so plain
generation (`generate`) and s1's budget forcing (budget_forcing.py) never ask which one they hold.

Decoding is what `eval` says and nothing else: decoding.decoding() is the settings both engines apply
(temperature 0: greedy). A checkpoint's generation_config.json (Qwen2.5-*-Instruct ship repetition
penalty 1.05, top_k 20, top_p 0.8, temperature 0.7) is never inherited: HF `generate` would fill every
setting left at its default from it; only the model's end-of-turn and padding ids count.
"""

from __future__ import annotations

import torch
from transformers import (GenerationConfig, LogitsProcessor, LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from reasoning_sft.evaluation.decoding import GREEDY


class SeededSampler(LogitsProcessor):
    """Sampling with a generator per row (each seeded by its sample's identity, decoding.sample_seed), in
    place of `generate`'s one global draw per step: a row's draws depend on its own seed only, never on
    the rows beside it, so a sample is the same in any batch and on any replica. It returns the drawn
    token as the only finite logit and `generate` decodes greedily after it."""

    def __init__(self, seeds: list[int], device):
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids, scores):
        probs = torch.softmax(scores.float(), dim=-1)
        picks = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(picks), device=scores.device), picks] = 0.0
        return out


class HFEngine:
    """A loaded transformers model as a generation engine (`eval.backend=hf`)."""
    batches_itself = False      # callers feed it `eval.batch_size` contexts at a time

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.hf_model = model
        self.dtype = str(model.dtype).removeprefix("torch.")   # what its weights were loaded in

    def _config(self, max_new_tokens: int, d: dict, sampled: bool) -> GenerationConfig:
        """`d` (decoding()) as a complete GenerationConfig: every value set, none left to the checkpoint
        (`sampled` False with a temperature: the SeededSampler draws, `generate` takes its pick)."""
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampled, temperature=d["temperature"] if sampled else 1.0,
            top_p=d["top_p"] if sampled else 1.0, top_k=(d["top_k"] or 0) if sampled else 0,
            repetition_penalty=d["repetition_penalty"], eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id, bos_token_id=self.model.generation_config.bos_token_id)

    @torch.no_grad()
    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None, seeds: list[int] | None = None) -> list[tuple[list[int], bool]]:
        """The continuation of each context in one batch, decoded as `sampling` says (decoding(); None:
        greedy); sampled with `seeds` (one per context, decoding.sample_seed): each row from its own
        generator, else from torch's global one. Returns per row the new ids without padding or
        end-of-turn token, and whether the row ended with the end-of-turn token."""
        model, tokenizer = self.model, self.tokenizer
        d = {**GREEDY, **(sampling or {})}
        pad = tokenizer.pad_token_id
        width = max(len(c) for c in contexts)
        input_ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=model.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=model.device)
        processors = LogitsProcessorList()
        if d["min_tokens"]:   # as vLLM's min_tokens: neither the end of turn nor a one-token stop marker before it
            stops = [tokenizer.eos_token_id] + [ids[0] for s in stop_strings or ()
                                                if len(ids := tokenizer(s, add_special_tokens=False)["input_ids"]) == 1]
            processors.append(MinNewTokensLengthLogitsProcessor(width, d["min_tokens"], stops, device=model.device))
        per_row = d["temperature"] > 0 and seeds is not None
        if per_row:   # generate's own warpers, in its order, then one draw per row from the row's generator
            processors.append(TemperatureLogitsWarper(d["temperature"]))
            if d["top_k"]:
                processors.append(TopKLogitsWarper(d["top_k"]))
            if d["top_p"] < 1.0:
                processors.append(TopPLogitsWarper(d["top_p"]))
            processors.append(SeededSampler(seeds, model.device))
        was_training, inherited = model.training, model.generation_config
        model.eval()
        # generate() fills every setting the config passed leaves at its default from the model's own
        # generation_config: a neutral one stands in for it meanwhile (only the special ids kept)
        model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
                                                   bos_token_id=inherited.bos_token_id)
        try:
            config = self._config(max_new_tokens, d, d["temperature"] > 0 and not per_row)
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                 use_cache=True, stop_strings=stop_strings, tokenizer=tokenizer if stop_strings else None,
                                 logits_processor=processors)
        finally:
            model.generation_config = inherited
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
             sampling: dict | None = None, seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """Plain generation for rendered prompts, `batch_size` at a time (an engine that batches itself,
    vLLM, takes them all at once), sampled rows seeded by `seeds` (one per prompt). Returns (text up to
    the end of turn, generated tokens)."""
    tokenizer = engine.tokenizer
    contexts = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    step = len(contexts) if engine.batches_itself else batch_size
    results = []
    for i in range(0, len(contexts), max(step, 1)):
        part = None if seeds is None else seeds[i:i + step]
        for ids, _ in engine.generate_ids(contexts[i:i + step], max_new_tokens, sampling=sampling, seeds=part):
            results.append((tokenizer.decode(ids, skip_special_tokens=False), len(ids)))
    return results



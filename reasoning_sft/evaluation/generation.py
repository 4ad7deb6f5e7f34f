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

from dataclasses import dataclass

import torch
from transformers import (GenerationConfig, LogitsProcessor, LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from reasoning_sft.evaluation.decoding import GREEDY, one_token_stops


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

    def __init__(self, model, tokenizer, reuse_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.hf_model = model
        self.dtype = str(model.dtype).removeprefix("torch.")   # what its weights were loaded in
        self.reuse_cache = reuse_cache
        self._kept: _KeptBatch | None = None   # the last call's batch and KV cache, when it was asked to keep them

    def _config(self, max_new_tokens: int, d: dict, sampled: bool, stop_ids: list[int],
                stop_strings: list[str]) -> GenerationConfig:
        """`d` (decoding()) as a complete GenerationConfig: every value set, none left to the checkpoint
        (`sampled` False with a temperature: the SeededSampler draws, `generate` takes its pick)."""
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampled, temperature=d["temperature"] if sampled else 1.0,
            top_p=d["top_p"] if sampled else 1.0, top_k=(d["top_k"] or 0) if sampled else None,
            repetition_penalty=d["repetition_penalty"], eos_token_id=[self.tokenizer.eos_token_id, *stop_ids],
            use_cache=True, return_dict_in_generate=True, stop_strings=stop_strings or None,
            pad_token_id=self.tokenizer.pad_token_id, bos_token_id=self.model.generation_config.bos_token_id)

    @torch.no_grad()
    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None, seeds: list[int] | None = None,
                     keep_cache: bool = False) -> list[tuple[list[int], bool]]:
        """The continuation of each context in one batch, decoded as `sampling` says (decoding(); None:
        greedy); sampled with `seeds` (one per context, decoding.sample_seed): each row from its own
        generator, else from torch's global one. Returns per row the new ids without padding or
        end-of-turn token, and whether the row ended with the end-of-turn token.
        `keep_cache`: the next call continues these contexts (budget forcing's next phase): the batch and
        its KV cache are kept, and a next call whose every context extends one of them (its context, then
        a prefix of what was generated for it) computes only what is new (_continue)."""
        model, tokenizer = self.model, self.tokenizer
        d = {**GREEDY, **(sampling or {})}
        pad = tokenizer.pad_token_id
        kept, self._kept = self._kept, None
        continued = _continue(kept, contexts, pad) if kept is not None and self.reuse_cache else None
        if continued is None:
            width = max(len(c) for c in contexts)
            input_ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=model.device)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=model.device)
            cache = None
        else:
            input_ids, mask, cache = continued
            width = input_ids.shape[1]
        del kept
        processors = LogitsProcessorList()
        stop_ids, longer_stops = one_token_stops(tokenizer, stop_strings)
        if d["min_tokens"]:   # as vLLM's min_tokens: neither the end of turn nor a one-token stop marker before it
            processors.append(MinNewTokensLengthLogitsProcessor(width, d["min_tokens"], [tokenizer.eos_token_id, *stop_ids],
                                                                device=model.device))
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
            config = self._config(max_new_tokens, d, d["temperature"] > 0 and not per_row, stop_ids, longer_stops)
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                 tokenizer=tokenizer if longer_stops else None, logits_processor=processors,
                                 past_key_values=cache)
        finally:
            model.generation_config = inherited
            model.train(was_training)
        sequences = out.sequences
        if keep_cache and self.reuse_cache:   # generate's mask grew by one column per new token
            grown = torch.ones(len(contexts), sequences.shape[1] - width, dtype=mask.dtype, device=mask.device)
            self._kept = _KeptBatch([list(c) for c in contexts], sequences, torch.cat([mask, grown], 1),
                                    out.past_key_values, width)
        rows = []
        for row in sequences[:, width:].tolist():
            ended = tokenizer.eos_token_id in row
            if ended:
                row = row[: row.index(tokenizer.eos_token_id)]
            elif stop_strings:
                while row and row[-1] == pad:     # rows that stopped on a stop marker are filled with padding
                    row.pop()
            rows.append((row, ended))
        return rows


@dataclass
class _KeptBatch:
    contexts: list[list[int]]
    sequences: torch.Tensor      # (rows, width + generated): the left-padded contexts, then what was generated
    mask: torch.Tensor           # its attention mask, as generate left it
    cache: object                # the KV cache of every column but the last (generate never fed the last token)
    width: int                   # the contexts' padded width


def _continue(kept: _KeptBatch, contexts: list[list[int]], pad: int):
    """(input ids, attention mask, KV cache) continuing `kept` for `contexts`, or None when some context
    extends none of its rows. Each context is matched to the kept row whose context it starts with; the
    generated tokens it repeats stay in the cache; the rest of that row's columns (a stop marker, tokens
    past a cut, padding) become holes (mask 0, pad ids: no position, no attention, no penalty); what is new
    goes after, right-aligned over holes. Positions come from the mask (generate's cumsum), so every token
    sits where a fresh left-padded batch would put it and the model sees the same sequence."""
    width, generated = kept.width, kept.sequences[:, kept.width:].tolist()
    by_context = {(len(c), tuple(c)): r for r, c in enumerate(kept.contexts)}
    lengths = sorted({len(c) for c in kept.contexts})
    rows, reused = [], []
    for c in contexts:
        r = next((by_context[key] for n in lengths if (key := (n, tuple(c[:n]))) in by_context), None)
        if r is None or r in rows:
            return None
        n, k, gen = len(kept.contexts[r]), 0, generated[r]
        limit = min(len(gen), len(c) - n - 1)   # at least one token is fed: its logits give the next
        while k < limit and c[n + k] == gen[k]:
            k += 1
        k = min(k, limit)   # -1: the context itself, nothing after it: its last token is fed again
        rows.append(r)
        reused.append(n + k)
    if not rows:
        return None
    select = torch.tensor(rows, device=kept.sequences.device)
    ids, mask = kept.sequences[select].clone(), kept.mask[select].clone()
    tails = [c[used:] for c, used in zip(contexts, reused)]
    longest = max(len(t) for t in tails)
    block = torch.tensor([[pad] * (longest - len(t)) + t for t in tails], device=ids.device)
    block_mask = torch.tensor([[0] * (longest - len(t)) + [1] * len(t) for t in tails], device=ids.device)
    for i, (r, used) in enumerate(zip(rows, reused)):
        keep = width + used - len(kept.contexts[r])   # the row's columns up to its reused generated tokens
        ids[i, keep:], mask[i, keep:] = pad, 0
    kept.cache.batch_select_indices(select)
    return torch.cat([ids, block], 1), torch.cat([mask, block_mask.to(mask.dtype)], 1), kept.cache


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



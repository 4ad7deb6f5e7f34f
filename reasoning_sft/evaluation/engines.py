"""Generation backends (`eval.backend`), one protocol: an `Engine` continues token-id contexts.

Each backend is registered by name in registry.BACKENDS with what the evaluate stage must hand it:
`hf` takes a model this process loaded (the stage loads it: a saved model, an adapter over its base,
or the config's checkpoint); `vllm` loads the model from its path in its own engine. Light on purpose
(the schema checks `eval.backend` without importing torch): the engines are imported when built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from reasoning_sft.registry import BACKENDS


class Engine(Protocol):
    tokenizer: object
    batches_itself: bool     # True: give it every context of a phase at once (vLLM schedules its own batches)
    hf_model: object         # the transformers model it runs, when in this process (lm-eval's log-likelihoods), else None
    dtype: str               # the precision its weights are loaded in (float32, bfloat16): the summaries say it

    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None, seeds: list[int] | None = None,
                     keep_cache: bool = False) -> list[tuple[list[int], bool]]:
        """Per context: the new token ids (without the end-of-turn token) and whether the turn ended;
        sampled rows drawn from their own `seeds` (decoding.sample_seed), whatever shares the batch;
        `keep_cache`: the next call continues these contexts (the engine may keep their KV cache)."""


@dataclass(frozen=True)
class Backend:
    name: str
    loads_model: bool        # True: the stage loads the model in this process and hands it to `build`
    build: Callable          # (model or path, tokenizer, eval config, seed) -> Engine
    require: Callable[[], None] = lambda: None   # a ConfigError saying how to install it, before any run dir
    batches_itself: bool = False   # its engines take every context of a phase at once (Engine.batches_itself)


def _hf(model, tokenizer, ev, seed) -> Engine:
    from reasoning_sft.evaluation.generation import HFEngine
    return HFEngine(model, tokenizer)


def _vllm(path, tokenizer, ev, seed) -> Engine:
    from reasoning_sft.evaluation.vllm_engine import VLLMEngine
    return VLLMEngine(path, tokenizer, ev.vllm, seed if ev.seed is None else ev.seed, sequences=ev.batch_size)


def _require_vllm() -> None:
    from reasoning_sft.evaluation.vllm_engine import require_vllm
    require_vllm()


BACKENDS.add("hf", Backend("hf", True, _hf))
BACKENDS.add("vllm", Backend("vllm", False, _vllm, _require_vllm, batches_itself=True))

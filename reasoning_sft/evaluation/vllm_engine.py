"""vLLM generation backend (`eval.backend=vllm`): the same plain, sampled and budget-forced generation
as the Hugging Face backend, on vLLM's engine (`make install-vllm`: the CUDA build on a GPU machine, the
CPU build elsewhere).

The engine is an `engines.Engine`: `generate_ids(contexts, max_new_tokens, stop_strings, sampling)` is
the one generation primitive the budget-forcing loop and plain generation call on either backend, so
forcing behaves identically on both: token ids in, token ids out.
It drives vLLM the way s1's fork does: every context of a phase in one `generate` call (vLLM batches
and schedules them), `max_tokens` per phase, a stop marker that is one token of the project's tokenizer
passed as a stop token id (s1: `stop_token_ids` for `<|im_start|>`), others as stop strings, and
`skip_special_tokens=False` so markers stay in the text. Prompts go in as token ids from the project's
tokenizer: vLLM's own tokenizer never re-encodes text (for a tiny model dir its AutoTokenizer picks a
class that splits digits differently).
"""

from __future__ import annotations

from pathlib import Path

from reasoning_sft.errors import ConfigError
from reasoning_sft.schema import VllmConfig

INSTALL_HINT = ("eval.backend='vllm': vLLM is not installed here (make install-vllm: the CUDA build on a GPU "
                "machine, the CPU build elsewhere); or use eval.backend=hf")


def require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def same_dtype_as_hf(dtype: str) -> str:
    """`eval.vllm.dtype`; `auto` is the precision the HF backend uses on this device (bfloat16 on a GPU,
    float32 on CPU), not vLLM's own auto (which loads a float32 checkpoint as bfloat16 on CPU)."""
    if dtype != "auto":
        return dtype
    import torch
    return "bfloat16" if torch.cuda.is_available() else "float32"


def kv_cache_bytes(path: str | Path, settings: VllmConfig, dtype: str, sequences: int) -> int | None:
    """The KV cache to give vLLM (engine arg kv_cache_memory_bytes), None to leave it vLLM's: `kv_cache_gb`
    when set; on CPU, unless VLLM_CPU_KVCACHE_SPACE or engine_args say, what `sequences` sequences of the
    model's full length take (its config.json: layers x KV heads x head size x 2 x the dtype's bytes),
    for vLLM's CPU default reserves 0.9 of the machine's RAM and refuses to start on a busy one."""
    import json
    import os

    import torch
    if settings.kv_cache_gb is not None:
        return int(settings.kv_cache_gb * (1 << 30))
    if torch.cuda.is_available() or os.environ.get("VLLM_CPU_KVCACHE_SPACE") or \
            "kv_cache_memory_bytes" in (settings.engine_args or {}):
        return None
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    c = json.loads(config_file.read_text())
    heads = c.get("num_attention_heads", 1)
    head_dim = c.get("head_dim") or c.get("hidden_size", 0) // heads
    per_token = 2 * c.get("num_hidden_layers", 1) * c.get("num_key_value_heads", heads) * head_dim * \
        (4 if dtype == "float32" else 2)
    length = settings.max_model_len or c.get("max_position_embeddings", 4096)
    return max(per_token * length * max(sequences, 1), 64 << 20)


class VLLMEngine:
    batches_itself = True    # every context of a phase in one `generate` call: vLLM schedules them
    hf_model = None          # generation only: log-likelihood tasks need eval.backend=hf

    def __init__(self, path: str | Path, tokenizer, settings: VllmConfig = VllmConfig(), seed: int = 0,
                 sequences: int = 8):
        require_vllm()
        from vllm import LLM
        if (Path(path) / "adapter_config.json").exists():
            raise ConfigError(f"model_path={path}: a LoRA adapter; vLLM here takes a full model "
                              "(train with peft.merge_after_train=true and use merged_model/)")
        s = settings   # eval.vllm (reasoning_sft/schema.py: VllmConfig), its defaults in one place
        self.dtype = same_dtype_as_hf(s.dtype)
        if s.max_model_len is not None:   # a length past the model's config (Long1K: 40960), as its predict.sh allows
            import os
            os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
        cache = kv_cache_bytes(path, s, self.dtype, sequences)
        self.llm = LLM(model=str(path), tensor_parallel_size=s.tensor_parallel_size, seed=seed,
                       gpu_memory_utilization=s.gpu_memory_utilization, max_model_len=s.max_model_len,
                       dtype=self.dtype, enforce_eager=s.enforce_eager,
                       **({"kv_cache_memory_bytes": cache} if cache else {}), **dict(s.engine_args or {}))
        self.tokenizer = tokenizer

    def _stops(self, stop_strings: list[str] | None) -> tuple[list[int], list[str]]:
        """(stop token ids, stop strings): the end of turn and every one-token marker as ids."""
        from reasoning_sft.evaluation.decoding import one_token_stops
        ids, strings = one_token_stops(self.tokenizer, stop_strings)
        return [self.tokenizer.eos_token_id, *ids], strings

    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None, seeds: list[int] | None = None,
                     keep_cache: bool = False) -> list[tuple[list[int], bool]]:
        """Per context: the new token ids (without the end-of-turn token) and whether the turn ended,
        decoded as `sampling` says (decoding.decoding(); None: greedy); sampled with `seeds`, each request
        with its own (decoding.sample_seed: the sample's identity, so every repeat of a prompt differs).
        `keep_cache` needs nothing here: vLLM's prefix cache keeps what a next phase repeats."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from reasoning_sft.evaluation.decoding import GREEDY
        d = {**GREEDY, **(sampling or {})}
        sampled = d["temperature"] > 0
        stop_ids, stop = self._stops(stop_strings)
        kwargs = dict(max_tokens=max_new_tokens, stop=stop or None, stop_token_ids=stop_ids,
                      include_stop_str_in_output=True, skip_special_tokens=False,
                      temperature=d["temperature"] if sampled else 0.0, top_p=d["top_p"] if sampled else 1.0,
                      top_k=(d["top_k"] or 0) if sampled else 0, repetition_penalty=d["repetition_penalty"],
                      min_tokens=d["min_tokens"])
        # without seeds the engine's own (LLM(seed=...)) draws in scheduling order
        params = [SamplingParams(**kwargs, seed=int(s)) for s in seeds] if sampled and seeds is not None \
            else SamplingParams(**kwargs)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=c) for c in contexts], params, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        rows = []
        for out in outs:
            first = out.outputs[0]
            ids = list(first.token_ids)
            # ended on the end-of-turn token (vLLM's own end-of-sequence: stop_reason None), not on a
            # marker and not on the budget
            ended = first.finish_reason == "stop" and first.stop_reason in (None, eos)
            if ended and ids and ids[-1] == eos:
                ids.pop()
            rows.append((ids, ended))
        return rows

    def close(self) -> None:
        """Stop vLLM's engine processes now (they otherwise end with this process)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

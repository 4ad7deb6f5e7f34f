"""vLLM generation backend (`eval.backend=vllm`): the same plain, sampled and budget-forced generation
as the Hugging Face backend, on vLLM's engine. Needs vLLM installed (a CUDA machine); without it the
evaluation stops at once with a config error saying how to get it.

The engine exposes `generate_ids(contexts, max_new_tokens, stop_strings, sampling)`, the one
generation primitive the budget-forcing loop and plain generation call (generation.generate_ids
dispatches to it), so forcing behaves identically on both backends: token ids in, token ids out.
"""

from __future__ import annotations

from pathlib import Path

from reasoning_sft.errors import ConfigError

INSTALL_HINT = ("eval.backend='vllm': vLLM is not installed here (pip install vllm, on a machine with a "
                "CUDA GPU); or use eval.backend=hf")


def require_vllm() -> None:
    import importlib.util
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(INSTALL_HINT)


class VLLMEngine:
    def __init__(self, path: str | Path, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0):
        require_vllm()
        from vllm import LLM
        if (Path(path) / "adapter_config.json").exists():
            raise ConfigError(f"model_path={path}: a LoRA adapter; vLLM here takes a full model "
                              "(train with peft.merge_after_train=true and use merged_model/)")
        self.llm = LLM(model=str(path), tensor_parallel_size=tensor_parallel_size, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.seed = seed
        self.device = "cuda"

    def generate_ids(self, contexts: list[list[int]], max_new_tokens: int, stop_strings: list[str] | None = None,
                     sampling: dict | None = None) -> list[tuple[list[int], bool]]:
        """Per context: the new token ids (without the end-of-turn token) and whether the turn ended."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        sampled = bool(sampling and sampling.get("do_sample"))
        params = SamplingParams(max_tokens=max_new_tokens, stop=stop_strings or None,
                                include_stop_str_in_output=True, skip_special_tokens=False,
                                temperature=sampling.get("temperature", 1.0) if sampled else 0.0,
                                top_p=sampling.get("top_p", 1.0) if sampled else 1.0,
                                seed=self.seed if sampled else None)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=c) for c in contexts], params, use_tqdm=False)
        eos = self.llm.get_tokenizer().eos_token_id
        rows = []
        for out in outs:
            first = out.outputs[0]
            ids = [t for t in first.token_ids if t != eos]
            # finished on the end-of-turn token (not on a stop string, not on the budget)
            ended = first.finish_reason == "stop" and first.stop_reason in (None, eos)
            rows.append((ids, ended))
        return rows

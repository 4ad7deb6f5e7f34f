"""Decoding settings, one dict both backends read (generation.HFEngine, vllm_engine.VLLMEngine): what
`eval` sets and nothing else, with the papers' vLLM `SamplingParams` defaults."""

from __future__ import annotations

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": None, "repetition_penalty": 1.0, "min_tokens": 0}


def decoding(temperature: float = 0.0, top_p: float = 1.0, top_k: int | None = None, repetition_penalty: float = 1.0,
             min_tokens: int = 0) -> dict:
    """The decoding settings both backends apply (eval.temperature, top_p, top_k, repetition_penalty,
    min_tokens): the papers' vLLM `SamplingParams`, whose defaults these are (top_k null: off)."""
    return {"temperature": temperature, "top_p": top_p, "top_k": top_k, "repetition_penalty": repetition_penalty,
            "min_tokens": min_tokens}

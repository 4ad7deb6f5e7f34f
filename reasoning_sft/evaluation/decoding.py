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


def one_token_stops(tokenizer, stop_strings: list[str] | None) -> tuple[list[int], list[str]]:
    """(the stop markers that are one token, as ids; the others, as strings), as both engines and s1's
    `stop_token_ids` take them: a one-token marker ends a row like the end of turn, with no matching of
    the row's text at every step."""
    ids, strings = [], []
    for s in stop_strings or ():
        one = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(one) == 1:
            ids.append(one[0])
        else:
            strings.append(s)
    return ids, strings


def sample_seed(seed: int, *key) -> int:
    """The seed of one sample's draws: (the run's generation seed, the sample's identity: task, problem,
    sample index, and the phase of budget forcing), so a sample's text depends on none of the batch it
    was drawn in, the replica that drew it (eval.data_parallel_size) or the other samples."""
    import hashlib
    text = "\0".join(str(k) for k in (seed, *key))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1   # an int64 both engines take

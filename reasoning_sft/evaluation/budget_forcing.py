"""Budget forcing (s1) on the one generation primitive (an engine's `generate_ids`: HF or vLLM), for
every thinking style, as `eval.budget_forcing` (schema.BudgetForcingConfig) sets it.

Thinking is generated from the prompt plus the style's opening marker and stops at the style's stop
marker (s1: `<|im_start|>`, R1: `</think>`, Sky-T1: `<|end_of_thought|>`):
- cap: at `max_thinking_tokens` thinking is cut and the end of thinking is forced (s1:
  `\n<|im_start|>answer\nFinal Answer:`); the answer gets its own budget (`max_answer_tokens`; by
  default the whole generation budget, as s1's fork gives it `max_tokens` again);
- extend: when the model ends its thinking early, the stop marker is dropped, `wait_string` is
  appended where it was and thinking continues, `num_wait` times or until `min_thinking_tokens`; with
  Waits every thinking phase decodes at least one token (s1's `min_tokens=1` with `thinking_n_ignore`);
- a thinking that ended on its own (and is not extended) gets only the style's delimiter (s1:
  `<|im_start|>answer`), as s1's evaluation code does: the model writes its answer itself.
Token ids are kept throughout (never re-tokenized text), so budgets are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning_sft.data.styles import ThinkingStyle
from reasoning_sft.evaluation.decoding import sample_seed
from reasoning_sft.schema import BudgetForcingConfig


@dataclass
class ForcedGeneration:
    text: str               # the assistant output: opening marker, thinking, delimiter, answer
    thinking_tokens: int
    answer_tokens: int
    waits: int
    capped: bool            # thinking was cut at the budget
    forced_ids: list[int]   # the token ids appended after the thinking (forced_text)


def _cut_at_stop(tokenizer, ids: list[int], stop: str) -> tuple[list[int], bool]:
    """(the ids before the stop marker, whether the marker was generated)."""
    if stop not in tokenizer.decode(ids, skip_special_tokens=False):
        return ids, False
    k = len(ids)
    while k > 0 and stop in tokenizer.decode(ids[:k], skip_special_tokens=False):
        k -= 1
    return ids[:k], True


def forced_text(style: ThinkingStyle, thinking: str, capped: bool) -> str:
    """What is appended after the thinking, as the training format renders it (s1's procedure):
    - thinking ended on its own: the end-of-thinking delimiter from the stop marker on (s1:
      `<|im_start|>answer`), so the model writes its answer as it learnt to;
    - thinking cut at the budget: the separator the model did not write, the delimiter and the
      style's cap prefix (s1: `\\n<|im_start|>answer\\nFinal Answer:`).
    Trailing whitespace is never forced: a lone space token is one the model never saw in training
    (it saw `Answer: The` as `Answer`, `:`, ` The`); the model writes its own."""
    sep, rest = style.think_end.split(style.think_stop, 1)
    if not capped:
        return (style.think_stop + rest).rstrip()
    missing = next(sep[k:] for k in range(len(sep), -1, -1) if thinking.endswith(sep[:k]))
    return missing + (style.think_stop + rest + style.cap_prefix).rstrip()


def thinking_cap(tokenizer, prompts: list[str], style: ThinkingStyle, bf: BudgetForcingConfig, max_new_tokens: int) -> int:
    """`bf.max_thinking_tokens` as a number: null is the generation budget; `auto` is s1's
    (vllm_causallms.py:262-265): max_new_tokens - the longest prompt - the opening marker - the forced
    end of thinking with its cap prefix - 100 tokens left for the answer, over the prompts asked together."""
    cap = bf.max_thinking_tokens
    if cap is None:
        return max_new_tokens
    if cap != "auto":
        return int(cap)
    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    forced_max = (style.think_end.lstrip("\n") + style.cap_prefix) if style.cap_prefix else style.think_end
    return max(1, max_new_tokens - max(n(p) for p in prompts) - n(style.think_start) - n(forced_max) - 100)


def generate_with_budget(engine, prompts: list[str], style: ThinkingStyle, bf: BudgetForcingConfig,
                         default_max_thinking: int, batch_size: int,
                         sampling: dict | None = None, cap: int | None = None,
                         seeds: list[int] | None = None) -> list[ForcedGeneration]:
    """Budget-forced generation for chat-rendered `prompts` (ending with the assistant header) on an
    engine (engines.Engine). `cap`: the thinking budget (thinking_cap(); None: resolved here over these
    prompts); `bf.max_answer_tokens` null: the answer gets the generation budget, as s1's fork gives it.
    `seeds` (one per prompt): a sampled row's phases each draw from (its seed, the phase), the k-th
    thinking phase after k Waits or the answer, whatever else shares its batch."""
    tokenizer = engine.tokenizer
    thinking_sampling = dict(sampling or {})
    if bf.num_wait:   # s1: thinking_n_ignore sets min_tokens=1 for every thinking phase
        thinking_sampling["min_tokens"] = max(thinking_sampling.get("min_tokens", 0), 1)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(token_ids: list[int]) -> str:
        return tokenizer.decode(token_ids, skip_special_tokens=False)

    cap = thinking_cap(tokenizer, prompts, style, bf, default_max_thinking) if cap is None else cap
    wait_ids = ids(bf.wait_string)
    results = []
    for start in range(0, len(prompts), batch_size):
        prefix = [ids(p + style.think_start) for p in prompts[start:start + batch_size]]
        row_seeds = None if seeds is None else seeds[start:start + batch_size]

        def phase_seeds(rows: list[int], phase) -> list[int] | None:
            return None if row_seeds is None else [sample_seed(row_seeds[i], phase(i)) for i in rows]
        thinking = [[] for _ in prefix]
        waits, capped = [0] * len(prefix), [False] * len(prefix)
        active = list(range(len(prefix)))
        while active:
            budget = max(cap - len(thinking[i]) for i in active)
            outs = engine.generate_ids([prefix[i] + thinking[i] for i in active], budget,
                                       [style.think_stop], thinking_sampling,
                                       seeds=phase_seeds(active, lambda i: f"thinking{waits[i]}"), keep_cache=True)
            still = []
            for i, (new, ended_turn) in zip(active, outs):
                new = new[: cap - len(thinking[i])]            # each row's own budget
                before, stopped = _cut_at_stop(tokenizer, new, style.think_stop)
                thinking[i] += before
                if not (stopped or ended_turn):                # ran out of budget: cap
                    capped[i] = len(thinking[i]) >= cap
                    continue
                wants_more = waits[i] < bf.num_wait or len(thinking[i]) < bf.min_thinking_tokens
                if wants_more and len(thinking[i]) + len(wait_ids) < cap:   # extend: Wait where the stop was
                    thinking[i] += wait_ids
                    waits[i] += 1
                    still.append(i)
            active = still
        forced = [ids(forced_text(style, decode(thinking[i]), capped[i])) for i in range(len(prefix))]
        answers = engine.generate_ids([prefix[i] + thinking[i] + forced[i] for i in range(len(prefix))],
                                      bf.max_answer_tokens or default_max_thinking, sampling=sampling,
                                      seeds=phase_seeds(range(len(prefix)), lambda i: "answer"))
        for i, (answer, _) in enumerate(answers):
            text = style.think_start + decode(thinking[i]) + decode(forced[i]) + decode(answer)
            results.append(ForcedGeneration(text, len(thinking[i]), len(answer), waits[i], capped[i], forced[i]))
    return results

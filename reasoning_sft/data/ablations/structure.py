"""Sky-T1's global-structure treatments: traces split into steps (paragraphs or an LLM splitter), then
steps shuffled, deleted or inserted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from reasoning_sft.data.records import Record
from reasoning_sft.errors import DataError
from reasoning_sft.data.ablations.base import Context, _changed, _expect, _params, _ratio, _refuse, _share, transform


# --- global structure -----------------------------------------------------------------------------

@dataclass
class ParagraphSplitter:
    """Steps = paragraphs (blank-line separated; single lines when a trace has no blank line),
    merged forward until each holds at least `min_chars` characters."""
    min_chars: int = 200

    def __call__(self, text: str) -> tuple[list[str], str, str]:
        sep = "\n\n" if "\n\n" in text else "\n"
        steps: list[str] = []
        for unit in (u.strip() for u in text.split(sep)):
            if not unit:
                continue
            if steps and len(steps[-1]) < self.min_chars:
                steps[-1] += sep + unit
            else:
                steps.append(unit)
        return steps, sep, "paragraph"


def _norm_word(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def align_steps(text: str, model_steps: list[str], min_coverage: float = 0.6) -> list[str] | None:
    """Cut `text` where the model's steps begin, so every step is the trace's own text even when the
    model paraphrased, dropped or merged words. The steps' words are aligned to the trace's words
    (difflib); a step begins at the trace word its first aligned word maps to, moved back over its
    unaligned leading words and on to a sentence start nearby. None when under `min_coverage` of
    the trace's words align (the reply is not this trace), or fewer than two steps are found."""
    from difflib import SequenceMatcher

    words = [(m.start(), _norm_word(m.group())) for m in re.finditer(r"\S+", text)]
    if not words:
        return None
    step_words, starts = [], []
    for step in model_steps:
        starts.append(len(step_words))
        step_words += [_norm_word(w) for w in step.split()]
    mapped: dict[int, int] = {}
    for a, b, size in SequenceMatcher(None, [w for _, w in words], step_words, autojunk=False).get_matching_blocks():
        mapped.update({b + k: a + k for k in range(size)})
    if len(mapped) < min_coverage * len(words):
        return None
    sentence_start = {0} | {i for i in range(1, len(words)) if re.search(r"[.!?:]$|\n", text[words[i - 1][0]:words[i][0]])}
    cuts = [0]
    for n, start in enumerate(starts[1:], 1):
        end = starts[n + 1] if n + 1 < len(starts) else len(step_words)
        first = next((j for j in range(start, end) if j in mapped), None)
        if first is None:
            continue                         # a step the trace does not hold: merged into the previous one
        i = mapped[first] - (first - start)
        near = [k for k in range(i - 3, i + 4) if k in sentence_start]
        i = min(near, key=lambda k: abs(k - i)) if near else i
        if cuts[-1] < i < len(words):
            cuts.append(i)
    if len(cuts) < 2:
        return None
    bounds = [words[i][0] for i in cuts] + [len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


@dataclass
class LLMSplitter:
    """Steps from a chat model behind an OpenAI-compatible endpoint (the paper used
    Llama-3.3-70B-Instruct). The model's steps are aligned back onto the trace (`align_steps`), so a
    paraphrasing model still yields the trace's own text; a reply that cannot be aligned falls back to
    the paragraph splitter for that trace (`fallback=paragraph`, counted in the card) or fails
    (`fallback=raise`). Replies are cached on disk by model, prompt and trace, so a sweep over rates
    asks the model once per trace. An endpoint that cannot be reached is an error, never a fallback."""
    base_url: str                    # e.g. http://localhost:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = 120.0
    cache_dir: str | None = None
    fallback: str = "paragraph"      # paragraph | raise
    min_coverage: float = 0.6
    prompt: str = ("Split the following reasoning trace into its reasoning steps. Return only a JSON list "
                   "of strings, the steps in order, copying the text exactly.\n\n{trace}")

    def _reply(self, text: str) -> tuple[str, bool]:
        from reasoning_sft.data.llm_client import cached_reply, chat_completion
        reply, cached = cached_reply(self.cache_dir, [self.model, self.prompt, text], lambda: chat_completion(
            self.base_url, self.model, self.prompt.format(trace=text), self.api_key_env, self.timeout_seconds))
        return reply or "", cached   # no text: the fallback, counted

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.fallback in ("paragraph", "raise"), "ablation.splitter.fallback", self.fallback,
                "'paragraph' or 'raise'")
        _share(errs, "ablation.splitter.min_coverage", self.min_coverage)
        _refuse(errs)

    def __call__(self, text: str) -> tuple[list[str], str, str]:
        import json
        reply, cached = self._reply(text)
        problem = None
        try:
            steps = json.loads(reply[reply.index("["): reply.rindex("]") + 1])
            if not steps or not all(isinstance(x, str) for x in steps):
                raise ValueError
        except ValueError:
            steps, problem = None, f"the reply is not a JSON list of steps: {reply[:200]!r}"
        aligned = align_steps(text, steps, self.min_coverage) if steps else None
        if aligned is None and problem is None:
            problem = "its steps do not align with the trace text"
        if aligned is None:
            if self.fallback == "raise":
                raise DataError(f"LLMSplitter({self.model}): {problem}")
            steps, sep, _ = ParagraphSplitter()(text)
            return steps, sep, "paragraph_fallback"
        return aligned, "\n\n", "llm_cached" if cached else "llm"


def _split(rec: Record, splitter) -> tuple[list[str], str, str]:
    return (splitter or ParagraphSplitter())(rec.thinking)


def _pick(n: int, rate: float) -> int:
    return int(round(rate * n))


def step_shuffle(records: list[Record], ctx: Context, rate: float, splitter=None) -> list[Record]:
    """Choose a `rate` share of the steps and permute them among their own positions (every chosen
    step moves when at least two are chosen)."""
    out = []
    for rec in records:
        steps, sep, how = _split(rec, splitter)
        k = _pick(len(steps), rate)
        if k < 2:
            out.append(_changed(rec, {"transform": "step_shuffle", "steps": len(steps), "moved": 0, "splitter": how}))
            continue
        positions = sorted(ctx.rng.sample(range(len(steps)), k))
        perm = list(positions)
        while any(p == q for p, q in zip(positions, perm)):   # a derangement: every chosen step moves
            ctx.rng.shuffle(perm)
        new = list(steps)
        for src, dst in zip(positions, perm):
            new[dst] = steps[src]
        order = list(range(len(steps)))               # order[i]: the original index of new step i
        for src, dst in zip(positions, perm):
            order[dst] = src
        moved = sum(new[i] != steps[i] for i in range(len(steps)))
        out.append(_changed(rec, {"transform": "step_shuffle", "steps": len(steps), "moved": moved,
                                  "order": order, "splitter": how}, thinking=sep.join(new)))
    return out


def step_delete(records: list[Record], ctx: Context, rate: float, splitter=None) -> list[Record]:
    """Delete a `rate` share of the steps, keeping the order of the rest; at least one step stays."""
    out = []
    for rec in records:
        steps, sep, how = _split(rec, splitter)
        k = min(_pick(len(steps), rate), len(steps) - 1)
        gone = set(ctx.rng.sample(range(len(steps)), k))
        kept = [s for i, s in enumerate(steps) if i not in gone]
        out.append(_changed(rec, {"transform": "step_delete", "steps": len(steps), "deleted": k,
                                  "deleted_steps": sorted(gone), "capped": _pick(len(steps), rate) > k,
                                  "splitter": how},
                            thinking=sep.join(kept)))
    return out


def step_insert(records: list[Record], ctx: Context, rate: float, splitter=None) -> list[Record]:
    """Insert a `rate` share (of the trace's own step count) of steps taken from other records."""
    split = [_split(r, splitter) for r in records]
    if len(records) < 2:
        raise DataError("ablation step_insert needs at least 2 records to take steps from")
    out = []
    for i, (rec, (steps, sep, how)) in enumerate(zip(records, split)):
        k = _pick(len(steps), rate)
        new = list(steps)
        for _ in range(k):
            j = ctx.rng.randrange(len(records) - 1)
            j += j >= i                                   # any record but this one
            new.insert(ctx.rng.randint(0, len(new)), ctx.rng.choice(split[j][0]))
        out.append(_changed(rec, {"transform": "step_insert", "steps": len(steps), "inserted": k, "splitter": how},
                            thinking=sep.join(new)))
    return out


def _step_card(acted: str) -> staticmethod:
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        """The share of all steps the treatment acted on, comparable with digit corruption's replaced_share."""
        return {f"{acted}_share": _ratio(total(acted), total("steps"))}
    return staticmethod(card)


@transform
@dataclass(frozen=True)
class StepShuffle:
    name: ClassVar[str] = "step_shuffle"
    rate: float
    splitter: Any = None     # ParagraphSplitter / LLMSplitter; null: paragraphs

    def __post_init__(self):
        errs: list[str] = []
        _share(errs, "rate", self.rate)
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return step_shuffle(records, ctx, **_params(self))

    card = _step_card("moved")


@transform
@dataclass(frozen=True)
class StepDelete(StepShuffle):
    name: ClassVar[str] = "step_delete"

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return step_delete(records, ctx, **_params(self))

    card = _step_card("deleted")


@transform
@dataclass(frozen=True)
class StepInsert(StepShuffle):
    name: ClassVar[str] = "step_insert"

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return step_insert(records, ctx, **_params(self))

    card = _step_card("inserted")



"""Ablations: transforms of prepared records, selected by the `ablation` config group.

Sky-T1's local-content corruptions (wrong answers, digit corruption, keyword removal) and
global-structure perturbations (shuffle / delete / insert steps), Long1K's long-trace synthesis
(`combine`) and the short-CoT baseline. Each treatment is an algorithm, `fn(records, ctx, **params) ->
records`, deterministic for a seed, that appends what it changed to each record's `metadata["ablation"]`;
and a plugin, the small frozen class the config's `ablation.transforms` names (`_target_`), which checks
its parameters when it is built (before any run dir: a bad value is one line naming its key), applies
the algorithm (`t(records, ctx)`) and reports its own figures in the data card (`card`). A new
treatment is one function and one class here, one YAML file in conf/ablation. The question is never
rewritten (except by `combine`, which makes new problems), so every record lines up with its original
by `id`.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from statistics import mean
from typing import Any, Callable, ClassVar, Optional

from reasoning_sft.data.records import Record
from reasoning_sft.errors import ConfigError, DataError

TRANSFORMS: dict[str, type] = {}   # name -> plugin class (summarize asks each for its card figures)


def transform(cls: type) -> type:
    """Register a plugin class by its `name`."""
    TRANSFORMS[cls.name] = cls
    return cls


def _params(plugin) -> dict:
    return {f.name: getattr(plugin, f.name) for f in fields(plugin)}


def _expect(errs: list[str], ok: bool, key: str, value: Any, expected: str) -> None:
    """A plugin's parameter check: the key as the config sets it (conf/ablation/*.yaml: `ablation.<key>`)."""
    if not ok:
        errs.append(f"{key if '.' in key else 'ablation.' + key}={value!r}: expected {expected}")


def _share(errs: list[str], key: str, value: Any) -> None:
    _expect(errs, isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1, key, value,
            "a number in [0, 1]")


def _refuse(errs: list[str]) -> None:
    """All of a plugin's problems in one ConfigError, one per line (the validation lists each)."""
    if errs:
        raise ConfigError("\n".join(errs))


@dataclass
class Context:
    rng: random.Random
    count_tokens: Callable[[str], int] = field(default=lambda text: len(text.split()))
    pool: list[Record] | None = None   # every loaded record, graded, before data.keep chose the base set


def _changed(rec: Record, change: dict, **fields) -> Record:
    change.update(chars_before=len(rec.thinking), chars_after=len(fields.get("thinking", rec.thinking)))
    meta = dict(rec.metadata)
    meta["ablation"] = list(meta.get("ablation", [])) + [change]
    return replace(rec, metadata=meta, **fields)


# --- local content ------------------------------------------------------------------------------

NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")   # SkyThought's corrupt branch: integers and decimals


def _other_number(text: str, rng: random.Random) -> str:
    """A different number with the same digits layout (same count, no new leading zero)."""
    for _ in range(20):
        out = "".join(
            c if not c.isdigit()
            else str(rng.randint(1 if (i == 0 and len(text.split(".")[0]) > 1) else 0, 9))
            for i, c in enumerate(text))
        if out != text:
            return out
    return out


DIGIT_SCOPES = ("response", "thinking")


def digit_corruption(records: list[Record], ctx: Context, rate: float, scope: str = "response",
                     keep_digit_count: bool = False) -> list[Record]:
    """SkyThought's script: every match of `\\b\\d+(\\.\\d+)?\\b` in the whole assistant response
    (thinking and solution, `scope=response`) is replaced, with probability `rate`, by
    `str(randint(0, 10))`. Variants: `scope=thinking` leaves the solution alone; `keep_digit_count`
    draws a different number with the same digits layout instead. Counted as the script reports:
    numbers found, replaced, changed (the new text differs), characters changed, share of the text."""
    out = []
    for rec in records:
        stats = {"numbers": 0, "replaced": 0, "changed": 0, "chars_changed": 0,
                 "chars": len(rec.thinking) + (len(rec.answer) if scope == "response" else 0)}

        def swap(m: re.Match) -> str:
            old = m.group(0)
            stats["numbers"] += 1
            if ctx.rng.random() >= rate:
                return old
            new = _other_number(old, ctx.rng) if keep_digit_count else str(ctx.rng.randint(0, 10))
            stats["replaced"] += 1
            if new != old:
                stats["changed"] += 1
                stats["chars_changed"] += len(old)
            return new

        thinking = NUMBER.sub(swap, rec.thinking)
        answer = NUMBER.sub(swap, rec.answer) if scope == "response" else rec.answer
        out.append(_changed(rec, {"transform": "digit_corruption", **stats}, thinking=thinking, answer=answer))
    return out


@transform
@dataclass(frozen=True)
class DigitCorruption:
    name: ClassVar[str] = "digit_corruption"
    rate: float
    scope: str = "response"
    keep_digit_count: bool = False

    def __post_init__(self):
        errs: list[str] = []
        _share(errs, "rate", self.rate)
        _expect(errs, self.scope in DIGIT_SCOPES, "scope", self.scope, f"one of {list(DIGIT_SCOPES)}")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return digit_corruption(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        """What SkyThought's script reports."""
        return dict(numbers_found=total("numbers"), numbers_replaced=total("replaced"),
                    numbers_changed=total("changed"), chars_changed=total("chars_changed"),
                    replaced_share=_ratio(total("replaced"), total("numbers")),
                    changed_share=_ratio(total("changed"), total("numbers")),
                    text_changed_share=_ratio(total("chars_changed"), total("chars")))


# Reflection and backtracking markers of R1 / QwQ traces (counts on the 291 real R1-distill traces:
# wait 6132, alternatively 1019, hmm 876, hold on 459, verify 229, let me check 215, double-check 152).
# Longer phrases are matched first, so "let me double-check" goes as one unit.
REFLECTION_KEYWORDS = [
    "wait", "hmm", "alternatively", "hold on", "on second thought",
    "let me double-check", "let me double check", "let's double-check", "double-checking", "double-check",
    "let me verify", "let's verify", "to verify", "verify",
    "let me cross-verify", "let's cross-verify", "to cross-verify", "cross-verify", "cross-check",
    "let me check", "let's check", "let me check again", "check again", "let me recheck", "recheck",
    "let me re-examine", "let me reconsider", "let me think again",
]
_SENTENCE_END = ".!?"
_TRAILING = re.compile(r"(?:\.{3}|\u2026|-{2,}|\u2014|[,;:!?.])*[ \t]*")


def _keyword_pattern(words: list[str]) -> re.Pattern:
    def one(w: str) -> str:   # "let's" matches a typographic apostrophe too; spaces match any run
        return r"\s+".join(re.escape(part).replace("'", "['\u2019]") for part in w.split())
    words = sorted(dict.fromkeys(w.strip().lower() for w in words if w.strip()), key=len, reverse=True)
    return re.compile(r"(?<![\w'\u2019])(?<!\w-)(?:" + "|".join(one(w) for w in words) + r")(?!\w|-\w)", re.I)


def _cut(text: str, start: int, end: int) -> str:
    """Remove the keyword at text[start:end] with its own punctuation, leaving readable text: no
    doubled spaces, no orphan comma, a sentence start re-capitalised, a sentence end kept."""
    trail = _TRAILING.match(text, end)
    punct = text[end:trail.end()].strip(" \t")
    left, right = text[:start], text[trail.end():]
    bare_left = left.rstrip(" \t")
    at_start = not bare_left or bare_left[-1] in _SENTENCE_END + "\n:;\"'(*"
    if at_start:
        if right[:1].islower() and (not bare_left or bare_left[-1] in _SENTENCE_END + "\n"):
            right = right[0].upper() + right[1:]
        if not bare_left.endswith("\n") and left != bare_left and right[:1] in (" ", "\t"):
            right = right.lstrip(" \t")
    else:
        ends = [c for c in punct if c in _SENTENCE_END] or (["."] if "\u2026" in punct else [])
        ends = [] if punct.startswith(("-", "\u2014")) else ends
        if ends:   # "that is 5, hmm. So" -> "that is 5. So"
            left = bare_left.rstrip(",;:") + ends[-1]
            right = (" " if right and right[0] not in " \t\n" else "") + right
        elif right[:1] in ",.;:!?)":   # "we wait, ." never happens, but no space before punctuation
            left = bare_left
    if left.endswith("\n") or not left.strip(" \t"):
        n = len(left) - len(left.rstrip("\n"))
        m = len(right) - len(right.lstrip("\n"))
        if n and m:   # a line that held only the keyword disappears with its line break
            left, right = left.rstrip("\n") + "\n" * max(n, m), right.lstrip("\n")
    if left.endswith((" ", "\t")) and (not right or right[0] in " \t\n"):
        left = left.rstrip(" \t")
    return left + right


def keyword_removal(records: list[Record], ctx: Context, rate: float,
                    keywords: list[str] | None = None) -> list[Record]:
    """Remove each reflection keyword or phrase (whole words, case-insensitive) with probability
    `rate`: at 1.0 none survives. A trace with nothing removed stays byte-identical; a removal takes
    the keyword's own comma or ellipsis with it and re-capitalises a sentence start."""
    pattern = _keyword_pattern(list(keywords or REFLECTION_KEYWORDS))
    out = []
    for rec in records:
        found = list(pattern.finditer(rec.thinking))
        chosen = [m for m in found if ctx.rng.random() < rate]
        thinking = rec.thinking
        for m in reversed(chosen):   # right to left: earlier offsets stay valid
            thinking = _cut(thinking, m.start(), m.end())
        change = {"transform": "keyword_removal", "found": len(found), "removed": len(chosen)}
        if chosen and not thinking.strip():   # a trace made only of keywords: kept, and counted
            thinking, change["removed"], change["kept_whole"] = rec.thinking, 0, 1
        out.append(_changed(rec, change, thinking=thinking))
    return out


@transform
@dataclass(frozen=True)
class KeywordRemoval:
    """Our offline approximation of Sky-T1's reflection removal (theirs is an LLM rewrite)."""
    name: ClassVar[str] = "keyword_removal"
    rate: float
    keywords: Optional[Any] = None   # null: REFLECTION_KEYWORDS

    def __post_init__(self):
        errs: list[str] = []
        _share(errs, "rate", self.rate)
        _expect(errs, self.keywords is None or (len(self.keywords) > 0 and all(isinstance(w, str) for w in self.keywords)),
                "keywords", self.keywords, "null or a non-empty list of words")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return keyword_removal(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        return dict(keywords_found=total("found"), keywords_removed=total("removed"),
                    removed_share=_ratio(total("removed"), total("found")), kept_whole=total("kept_whole"))


# SkyThought's corrupt branch, skythought/tools/util/prompts.py:173-180 `remove_reflection_prompt`, as
# Python joins its backslash-continued lines (verbatim, one line).
REMOVE_REFLECTION_PROMPT = (
    "You will be provided with an unstructured response that includes multiple revisions and reflections. "
    "Each revision follows this structure: [Target of reflection, subsequent reflection, corrected content]. "
    "Your task is to remove all targets of reflection and their corresponding revisions. Identify the precise "
    "sections of the response that are targets of reflection and remove them, ensuring that no content is left "
    "behind. Do not include transition phrases such as 'wait,' 'let me think again,' or similar expressions. "
    "Copy the entire content verbatim except for the removed portions. Maintain the headers "
    "<|begin_of_thought|>, <|end_of_thought|>, <|begin_of_solution|>, and <|end_of_solution|> without any "
    "changes. Now, please apply the instructions to the following content: {content}")
# tools/tag_output.py:30-39: gpt-4o-mini, this system turn, max_tokens 16384, temperature 0.7
REWRITE_SYSTEM = "You are a helpful chatbot."
REWRITE_SAMPLING = {"temperature": 0.7, "max_tokens": 16384}
SKYT1_HEADERS = ("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>")


def skyt1_response(rec: Record) -> str:
    """The assistant turn as Sky-T1's data holds it (`conversations[1].value`): what the rewrite reads."""
    return (f"{SKYT1_HEADERS[0]}\n\n{rec.thinking}\n\n{SKYT1_HEADERS[1]}\n\n{SKYT1_HEADERS[2]}\n\n{rec.answer}"
            f"\n\n{SKYT1_HEADERS[3]}")


def parse_rewrite(reply: str) -> tuple[str, str] | str:
    """(thinking, answer) of a rewritten response, or why the reply is unusable. SkyThought's script
    writes whatever came back into the data, "Error processing content: ..." included: here a reply
    is used only with its four headers in order and a thinking and an answer that are not empty."""
    text = reply.strip()
    if not text:
        return "empty reply"
    if text.startswith(("Error processing content", "Error: Rate limit")):
        return "an error string"
    at = [text.find(h) for h in SKYT1_HEADERS]
    if min(at) < 0 or at != sorted(at):
        return "headers missing or out of order"
    thinking = text[at[0] + len(SKYT1_HEADERS[0]):at[1]].strip()
    answer = text[at[2] + len(SKYT1_HEADERS[2]):at[3]].strip()
    if not thinking or not answer:
        return "empty thinking or answer"
    return thinking, answer


@dataclass
class RewriteClient:
    """Rewrites through an OpenAI-compatible endpoint, each reply cached on disk by model, prompt,
    sampling and response (a re-run or a sweep over rates asks once per response)."""
    base_url: str
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = 600.0
    workers: int = 8
    cache_dir: str | None = None

    def ask(self, content: str) -> tuple[str | None, bool]:
        """(reply, from the cache); reply None when the endpoint answered with no text."""
        from reasoning_sft.data.llm_client import cached_reply, chat_completion
        prompt = REMOVE_REFLECTION_PROMPT.format(content=content)
        return cached_reply(self.cache_dir, [self.model, REWRITE_SYSTEM, REWRITE_SAMPLING, prompt],
                            lambda: chat_completion(self.base_url, self.model, prompt, self.api_key_env,
                                                    self.timeout_seconds, system=REWRITE_SYSTEM,
                                                    sampling=REWRITE_SAMPLING),
                            keep=lambda reply: not isinstance(parse_rewrite(reply), str))   # usable replies only


def reflection_rewrite(records: list[Record], ctx: Context, rate: float, llm, fallback: str = "keep") -> list[Record]:
    """Sky-T1's reflection removal as its released tools/tag_output.py runs it: each sample, with
    probability `rate` (`if random.random() > ratio: return entry`), has its whole response (thinking
    and solution) rewritten by a chat model with `remove_reflection_prompt`. Every reply is checked
    (parse_rewrite); an unusable one keeps the sample as it was (`fallback=keep`, counted by reason)
    or stops the stage (`fallback=raise`). An endpoint that cannot be reached is an error."""
    from concurrent.futures import ThreadPoolExecutor
    chosen = [i for i, _ in enumerate(records) if not ctx.rng.random() > rate]   # decided first: seeded, in order
    with ThreadPoolExecutor(max_workers=max(1, llm.workers)) as pool:
        replies = dict(zip(chosen, pool.map(lambda i: llm.ask(skyt1_response(records[i])), chosen)))
    out = []
    for i, rec in enumerate(records):
        if i not in replies:
            out.append(_changed(rec, {"transform": "reflection_rewrite", "rewritten": 0}))
            continue
        reply, cached = replies[i]
        parsed = parse_rewrite(reply) if reply is not None else "no text in the reply"
        if isinstance(parsed, str):
            if fallback == "raise":
                raise DataError(f"ablation=reflection_rewrite: record {rec.id}: the rewrite is unusable ({parsed}): "
                                f"{(reply or '')[:200]!r}")
            out.append(_changed(rec, {"transform": "reflection_rewrite", "rewritten": 0, "rejected": 1,
                                      "rejected_reason": parsed}))
            continue
        thinking, answer = parsed
        out.append(_changed(rec, {"transform": "reflection_rewrite", "rewritten": 1, "cached": int(cached),
                                  "changed": thinking != rec.thinking or answer != rec.answer},
                            thinking=thinking, answer=answer))
    return out


@transform
@dataclass(frozen=True)
class ReflectionRewrite:
    """Sky-T1's reflection removal: an LLM rewrite per sample (reflection_rewrite)."""
    name: ClassVar[str] = "reflection_rewrite"
    rate: float
    llm: Any                 # a RewriteClient (conf/ablation/reflection_rewrite.yaml: ablation.llm.*)
    fallback: str = "keep"   # keep | raise: what an unusable reply does

    def __post_init__(self):
        errs: list[str] = []
        _share(errs, "rate", self.rate)
        _expect(errs, self.fallback in ("keep", "raise"), "fallback", self.fallback, "'keep' or 'raise'")
        _expect(errs, isinstance(getattr(self.llm, "workers", None), int) and self.llm.workers >= 1,
                "ablation.llm.workers", getattr(self.llm, "workers", None), "an integer >= 1")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return reflection_rewrite(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        reasons = Counter(c["rejected_reason"] for c in changes if c.get("rejected"))
        return dict(rewritten=total("rewritten"), rejected=total("rejected"), rejected_by_reason=dict(reasons),
                    from_cache=total("cached"), rewritten_share=_ratio(total("rewritten"), len(changes)))


_BOXED_NUMBER = re.compile(r"(\\boxed\{)\s*(-?\d+(?:\.\d+)?)\s*(\})")
WRONG_ANSWER_MODES = ("natural", "swap", "perturb", "filter_incorrect")


def wrong_answers(records: list[Record], ctx: Context, mode: str = "natural",
                  correctness_field: str = "correct") -> list[Record]:
    """Train on wrong final answers.
    `natural` (Sky-T1): the pool's own responses that the grader marks wrong against their gold
    answer, as many as the (correct) records given, drawn with the seed; `filter_incorrect`: every
    record whose `metadata[correctness_field]` is False (a column of the data, or the grade prepare
    gives against the gold answer). Variants: `swap` gives each record another record's answer (a
    derangement); `perturb` shifts the boxed number."""
    if mode == "natural":
        pool = ctx.pool if ctx.pool is not None else records
        graded = [r for r in pool if correctness_field in r.metadata]
        wrong = [r for r in graded if r.metadata[correctness_field] is False]
        if not graded:
            raise DataError("ablation wrong_answers mode=natural: no record is graded; give the data a gold "
                             "answer (e.g. data.source.fields.gold_answer=COL or data.source.gold_field=COL) "
                             "and data.keep=correct, or a boolean column named by correctness_field")
        if not wrong:
            raise DataError(f"ablation wrong_answers mode=natural: none of the {len(graded)} graded responses "
                             "is wrong, so there are no natural wrong answers to train on")
        chosen = ctx.rng.sample(wrong, min(len(records), len(wrong)))
        return [_changed(r, {"transform": "wrong_answers", "mode": mode, "changed": True,
                             "wanted": len(records), "available": len(wrong)}) for r in chosen]
    if mode == "filter_incorrect":
        missing = [r.id for r in records if correctness_field not in r.metadata]
        if missing:
            raise DataError(f"ablation wrong_answers: records {missing[:3]} have no metadata[{correctness_field!r}] "
                             "to filter on (give the data a gold answer so prepare grades it, or a boolean column)")
        return [_changed(r, {"transform": "wrong_answers", "mode": mode, "changed": False})
                for r in records if r.metadata[correctness_field] is False]
    if mode == "swap":
        if len(records) < 2:
            raise DataError("ablation wrong_answers mode=swap needs at least 2 records")
        order = list(range(len(records)))
        ctx.rng.shuffle(order)
        donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}   # a cycle: no fixed point
        return [_changed(r, {"transform": "wrong_answers", "mode": mode, "donor": records[donor[i]].id,
                             "changed": records[donor[i]].answer != r.answer},
                         answer=records[donor[i]].answer) for i, r in enumerate(records)]
    out = []
    for r in records:   # perturb
        answer, n = _BOXED_NUMBER.subn(
            lambda m: m.group(1) + str(_shift(m.group(2), ctx.rng)) + m.group(3), r.answer)
        out.append(_changed(r, {"transform": "wrong_answers", "mode": mode, "changed": n > 0}, answer=answer))
    return out


def _shift(number: str, rng: random.Random) -> str:
    delta = rng.choice([-3, -2, -1, 1, 2, 3])
    return str(int(number) + delta) if "." not in number else f"{float(number) + delta:g}"


@transform
@dataclass(frozen=True)
class WrongAnswers:
    name: ClassVar[str] = "wrong_answers"
    needs_grades: ClassVar[bool] = True   # prepare grades the pool against its gold answers first
    mode: str = "natural"
    correctness_field: str = "correct"

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.mode in WRONG_ANSWER_MODES, "mode", self.mode, f"one of {list(WRONG_ANSWER_MODES)}")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return wrong_answers(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        if not any("wanted" in c for c in changes):
            return {}
        return dict(wanted=changes[0]["wanted"], available=changes[0]["available"],
                    shortfall=max(0, changes[0]["wanted"] - len(changes)))


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


# --- long traces (Long1K) and the short-CoT baseline ---------------------------------------------

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
# Long1K's linking: the questions numbered in one prompt, each trace introduced in turn, the answers
# given per problem. The paper describes the join and its README "different linking words"; the
# wording is ours (configurable: ablation.linking). A list gives variants: sample i uses variant
# i mod len, so consecutive samples differ and a dataset is the same on every run.
LINKING = {
    "question_header": ["Solve the following {n} problems.", "Answer each of these {n} questions.",
                        "Here are {n} problems; solve them all."],
    "question_item": "Problem {i}: {question}",
    "thinking_first": ["Let me start with the {ordinal} problem.", "First, the {ordinal} problem.",
                       "I'll begin with the {ordinal} problem."],
    "thinking_next": ["Now let me move on to the {ordinal} problem.", "Next, the {ordinal} problem.",
                      "Moving on to the {ordinal} problem.", "Let's now turn to the {ordinal} problem."],
    "answer_item": "For the {ordinal} problem: {answer}",
}


def _variants(value) -> list[str]:
    """A linking entry's wordings: one string, or a list of them (a config's ListConfig too)."""
    return [value] if isinstance(value, str) else list(value)


def _variant(value, index: int) -> str:
    options = _variants(value)
    return options[index % len(options)]


def _join(parts: list[Record], linking: dict, index: int) -> Record:
    link = {k: _variant(v, index) for k, v in {**LINKING, **(linking or {})}.items()}
    ordinal = [ORDINALS[i] if i < len(ORDINALS) else f"problem {i + 1}'s" for i in range(len(parts))]
    question = link["question_header"].format(n=len(parts)) + "\n\n" + "\n\n".join(
        link["question_item"].format(i=i + 1, question=p.question) for i, p in enumerate(parts))
    thinking = "\n\n".join(
        link["thinking_first" if i == 0 else "thinking_next"].format(ordinal=ordinal[i]) + "\n\n" + p.thinking
        for i, p in enumerate(parts))
    answer = "\n\n".join(link["answer_item"].format(ordinal=ordinal[i], answer=p.answer)
                          for i, p in enumerate(parts))
    return Record(id=f"combined-{index}", question=question, thinking=thinking, answer=answer,
                  source="combined", domain="+".join(sorted({p.domain for p in parts})),
                  metadata={"parts": [p.id for p in parts],
                            "gold_answer": [p.metadata.get("gold_answer") for p in parts]})


def _groups_by_length(records: list[Record], ctx: Context, wanted: int, target: int, tolerance: float,
                      max_parts: int, link_tokens: int = 0) -> tuple[list[list[Record]], dict]:
    """First-fit: each record (seeded order, each used at most once) goes to the first open group it
    fits in without passing target*(1+tolerance) tokens; a group closes at target*(1-tolerance/2). A
    record alone within the bounds is a group of one (the short end of the length study). Each part
    of a joined group also counts the `link_tokens` of its linking sentence."""
    lo, hi = target * (1 - tolerance / 2), target * (1 + tolerance)   # closing at 1 - tol/2 centres the mean
    order = list(records)
    ctx.rng.shuffle(order)
    open_groups: list[tuple[list[Record], int]] = []
    closed: list[list[Record]] = []
    too_long = 0
    for rec in order:
        if len(closed) == wanted:
            break
        n = ctx.count_tokens(rec.thinking)
        if n > hi:
            too_long += 1
            continue
        for g, (members, total) in enumerate(open_groups):
            joined = total + n + link_tokens * (2 if len(members) == 1 else 1)
            if joined <= hi and len(members) < max_parts:
                members.append(rec)
                open_groups[g] = (members, joined)
                break
        else:
            open_groups.append(([rec], n))
            g = len(open_groups) - 1
        members, total = open_groups[g]
        if total >= lo:
            closed.append(members)
            open_groups.pop(g)
    return closed, {"too_long_for_target": too_long, "left_in_open_groups": sum(len(m) for m, _ in open_groups)}


def combine(records: list[Record], ctx: Context, k: int = 2, num_samples: int | None = None,
            target_tokens: int | None = None, tolerance: float = 0.25, max_parts: int = 8,
            long_share: float = 0.0, long_source: list[Record] | None = None, long_min_tokens: int = 0,
            linking: dict | None = None) -> list[Record]:
    """Long1K: join problems (pairs by default) into one prompt, and their traces and answers into one
    long trace; every source problem is used at most once in the dataset.

    The output holds `num_samples` records (null: as many groups as the pool makes). A `long_share`
    of them are instead long single-problem samples from `long_source` (Long1K mixes in s1.1 problems)
    whose thinking has at least `long_min_tokens` tokens. With `target_tokens`, groups are built to
    about that many thinking tokens (within `tolerance`; one to `max_parts` problems each) instead of
    `k` per group: one length level of the paper's log-linear study."""
    capacity = len(records) // k if target_tokens is None else None
    total = num_samples if num_samples is not None else capacity
    n_long = int(round(long_share * total))
    n_joined = total - n_long
    stats: dict = {"pool": len(records)}
    if target_tokens is None:
        if n_joined > len(records) // k:
            raise DataError(f"ablation combine: {n_joined} samples of k={k} problems need {n_joined * k} "
                             f"distinct source problems; the pool holds {len(records)} (each is used once)")
        order = list(records)
        ctx.rng.shuffle(order)
        groups = [order[i * k:(i + 1) * k] for i in range(n_joined)]
    else:
        link = {**LINKING, **(linking or {})}
        link_tokens = max(ctx.count_tokens(v.format(ordinal="second") + "\n\n") for v in _variants(link["thinking_next"]))
        groups, more = _groups_by_length(records, ctx, n_joined, target_tokens, tolerance, max_parts, link_tokens)
        stats.update(more)
        if len(groups) < n_joined:
            raise DataError(f"ablation combine target_tokens={target_tokens}: the pool of {len(records)} "
                             f"problems makes only {len(groups)} samples of about that length, "
                             f"{n_joined} wanted ({more})")
    out = []
    for i, parts in enumerate(groups):
        rec = parts[0] if len(parts) == 1 else _join(parts, linking, i)
        out.append(_changed(rec, {"transform": "combine", "parts": len(parts),
                                  "tokens": ctx.count_tokens(rec.thinking), **stats}))
    if n_long:
        used = {r.question for g in groups for r in g}
        eligible = [r for r in long_source if r.question not in used
                    and ctx.count_tokens(r.thinking) >= long_min_tokens]
        if len(eligible) < n_long:
            raise DataError(f"ablation combine: {n_long} long samples wanted, {len(eligible)} in long_source "
                             f"have at least long_min_tokens={long_min_tokens} thinking tokens")
        for rec in ctx.rng.sample(eligible, n_long):
            out.append(_changed(rec, {"transform": "combine", "parts": 1, "long_mix": True,
                                      "tokens": ctx.count_tokens(rec.thinking), **stats}))
    ctx.rng.shuffle(out)
    return out


@transform
@dataclass(frozen=True)
class Combine:
    name: ClassVar[str] = "combine"
    makes_num_samples: ClassVar[bool] = True   # the pool is not cut to data.num_samples before joining
    k: int = 2
    num_samples: Optional[int] = None
    target_tokens: Optional[int] = None
    tolerance: float = 0.25
    max_parts: int = 8
    long_share: float = 0.0
    long_source: Any = None       # records (a loader node in the config)
    long_min_tokens: int = 0
    linking: Any = None           # overrides of LINKING

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, isinstance(self.max_parts, int) and self.max_parts >= 1, "max_parts", self.max_parts, "an integer >= 1")
        _expect(errs, isinstance(self.k, int) and 1 <= self.k <= self.max_parts, "k", self.k,
                f"an integer in 1..ablation.max_parts ({self.max_parts})")
        _share(errs, "long_share", self.long_share)
        _expect(errs, self.tolerance > 0, "tolerance", self.tolerance, "a number > 0")
        _expect(errs, self.num_samples is None or self.num_samples >= 1, "data.num_samples", self.num_samples,
                "null or an integer >= 1")
        _expect(errs, self.target_tokens is None or self.target_tokens >= 1, "target_tokens", self.target_tokens,
                "null or an integer >= 1")
        _expect(errs, self.target_tokens is None or self.num_samples is not None, "data.num_samples", self.num_samples,
                "an integer with ablation.target_tokens: it says how many samples to make")
        _expect(errs, self.long_share == 0 or bool(self.long_source), "long_source", self.long_source,
                "records (s1.1's long problems) with ablation.long_share > 0")
        unknown = set(self.linking or {}) - set(LINKING)
        _expect(errs, not unknown, "linking", dict(self.linking or {}), f"keys among {sorted(LINKING)}")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return combine(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        return {"parts": dict(sorted(Counter(c["parts"] for c in changes).items())),
                "long_mix": sum(bool(c.get("long_mix")) for c in changes)}


def short_cot(records: list[Record], ctx: Context, field: str = "solution",
              on_missing: str = "raise") -> list[Record]:
    """The papers' short-CoT baseline: the long trace replaced by the short reference solution."""
    out = []
    for rec in records:
        solution = rec.metadata.get(field)
        if not isinstance(solution, str) or not solution.strip():
            if on_missing == "skip":
                continue
            raise DataError(f"ablation short_cot: record {rec.id!r} has no metadata[{field!r}] "
                             "(use ablation.on_missing=skip to drop such records, counted)")
        out.append(_changed(rec, {"transform": "short_cot"}, thinking=solution.strip()))
    return out


@transform
@dataclass(frozen=True)
class ShortCot:
    name: ClassVar[str] = "short_cot"
    field: str = "solution"
    on_missing: str = "raise"     # raise | skip (counted in the data card)

    def __post_init__(self):
        errs: list[str] = []
        _expect(errs, self.on_missing in ("raise", "skip"), "on_missing", self.on_missing, "'raise' or 'skip'")
        _refuse(errs)

    def __call__(self, records: list[Record], ctx: Context) -> list[Record]:
        return short_cot(records, ctx, **_params(self))

    @staticmethod
    def card(changes: list[dict], total: Callable[[str], int]) -> dict:
        return {}


# --- applying and reporting -----------------------------------------------------------------------

def apply_transforms(records: list[Record], transforms: list, seed: int,
                     count_tokens: Callable[[str], int] | None = None,
                     pool: list[Record] | None = None) -> tuple[list[Record], list[dict]]:
    """Apply the instantiated transforms in order; returns the records and a count per stage.
    `pool`: every loaded record (graded), for treatments that draw from beyond the base set."""
    stages = []
    for i, fn in enumerate(transforms):
        rng = random.Random(f"{seed}-{i}")
        ctx = Context(rng, pool=pool) if count_tokens is None else Context(rng, count_tokens, pool)
        name = fn.name
        before = len(records)
        records = fn(records, ctx)
        empty = [r.id for r in records if not r.thinking.strip()]
        if empty:
            raise ValueError(f"ablation {name} produced empty traces (records {empty[:3]}): a bug, please report")
        stages.append({"transform": name, "records_in": before, "records_out": len(records)})
    return records, stages


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarize(records: list[Record]) -> dict:
    """Aggregate per-sample changes by transform: how many samples, how many changed, the means, and
    each treatment's own figures (its plugin's `card`: digit corruption reports what SkyThought's script does)."""
    by_transform: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        for change in rec.metadata.get("ablation", []):
            by_transform[change["transform"]].append(change)
    out = {}
    for name, changes in by_transform.items():
        numeric = {k for c in changes for k, v in c.items() if isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        agg = {"samples": len(changes),
               "samples_changed": sum(bool(c["chars_before"] != c["chars_after"] or c.get("changed", False)
                                           or c.get("replaced", 0) > 0 or c.get("moved", 0) > 0
                                           or c.get("removed", 0) > 0) for c in changes)}
        agg.update({f"mean_{k}": round(mean(c.get(k, 0) for c in changes), 3) for k in sorted(numeric)})
        total = lambda key: sum(c.get(key, 0) for c in changes)   # noqa: E731
        if name in TRANSFORMS:
            agg.update(TRANSFORMS[name].card(changes, total))   # each treatment's own figures
        splitters = Counter(c["splitter"] for c in changes if "splitter" in c)
        if splitters:
            agg["splitter"] = dict(sorted(splitters.items()))
        out[name] = agg
    return out

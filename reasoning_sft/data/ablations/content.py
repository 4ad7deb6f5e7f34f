"""Sky-T1's local-content treatments: digit corruption, reflection removal (keyword removal, the LLM
rewrite), wrong answers."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from reasoning_sft.data.records import Record
from reasoning_sft.errors import DataError
from reasoning_sft.data.ablations.base import Context, _changed, _expect, _params, _ratio, _refuse, _share, transform


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



"""Render records as chat text in a thinking style and tokenize them with assistant-only labels."""

from __future__ import annotations

from collections import Counter
from transformers import PreTrainedTokenizerBase

from reasoning_sft.data.records import Record
from reasoning_sft.data.styles import ThinkingStyle, get_style  # noqa: F401 - the styles' home; re-exported
from reasoning_sft.errors import ConfigError
from reasoning_sft.registry import THINKING_STYLES  # noqa: F401

IGNORE_INDEX = -100


def assistant_text(rec: Record, style: ThinkingStyle) -> str:
    thinking, answer, prefix = rec.thinking, rec.answer, style.answer_prefix
    if style.strip_parts:
        thinking, answer = thinking.strip(), answer.strip()
        if prefix.strip() and prefix.strip() in answer:
            prefix = ""
    return style.think_start + thinking + style.think_end + prefix + answer + style.answer_end


def prompt_messages(question: str, system_prompt: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": question}]


def render_prompt(question: str, tokenizer: PreTrainedTokenizerBase,
                  system_prompt: str | None = None) -> str:
    """The chat text up to and including the assistant header: what generation starts from."""
    return tokenizer.apply_chat_template(prompt_messages(question, system_prompt), tokenize=False,
                                         add_generation_prompt=True)


def record_system_prompt(rec: Record) -> str | None:
    system = rec.metadata.get("system")
    return system if isinstance(system, str) and system.strip() else None


def training_system_prompt(records: list[Record], system_prompt: str | None) -> str | None:
    """The system prompt a model was trained with: the configured one, else the records' own (the
    most common, when they carry one); None means the chat template's default."""
    if system_prompt:
        return system_prompt
    own = Counter(p for p in map(record_system_prompt, records) if p)
    return own.most_common(1)[0][0] if own else None


def render_chat(rec: Record, tokenizer: PreTrainedTokenizerBase, style: ThinkingStyle,
                system_prompt: str | None = None) -> tuple[str, str]:
    """(prompt, completion): the completion is the assistant turn through its end-of-turn token.
    With no `system_prompt`, a record's own (Sky-T1's ShareGPT rows carry one) is used."""
    system_prompt = system_prompt or record_system_prompt(rec)
    prompt = render_prompt(rec.question, tokenizer, system_prompt)
    messages = prompt_messages(rec.question, system_prompt)
    messages.append({"role": "assistant", "content": assistant_text(rec, style)})
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(f"chat template of {tokenizer.name_or_path!r} does not render the prompt as a "
                         "prefix of the conversation: cannot mask the prompt")
    completion = full[len(prompt):]
    # Supervise through the end-of-turn token, not the template's trailing newline after it.
    eot = tokenizer.eos_token
    if eot and eot in completion:
        completion = completion[: completion.rindex(eot) + len(eot)]
    return prompt, completion


def encode_batch(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list:
    """Encodings (`.ids`, `.char_to_token`) of many texts in one call on every core, no special tokens.
    Straight from the fast tokenizer's Rust backend: the same ids as `tokenizer(texts)` without
    converting each encoding into Python dicts first."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:       # a slow tokenizer: one text at a time
        return [_SlowEncoding(tokenizer, t) for t in texts]
    backend.no_padding()      # transformers leaves the last call's padding set on the backend
    backend.no_truncation()
    return backend.encode_batch(texts, add_special_tokens=False)


class _SlowEncoding:
    def __init__(self, tokenizer, text: str):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        self.ids, self._offsets = enc["input_ids"], enc["offset_mapping"]

    def char_to_token(self, pos: int) -> int | None:
        return next((i for i, (a, b) in enumerate(self._offsets) if a <= pos < b), None)


def _span_tokens(encoding, text: str, span: str) -> int | None:
    """Tokens of `span` as it is tokenized inside `text` (the trace in its conversation)."""
    start = text.find(span) if span else -1
    if start < 0:
        return None
    first, last = encoding.char_to_token(start), encoding.char_to_token(start + len(span) - 1)
    return None if first is None or last is None else last - first + 1


def tokenize_records(records: list[Record], tokenizer: PreTrainedTokenizerBase, style: ThinkingStyle,
                     max_seq_len: int, overflow: str = "drop",
                     system_prompt: str | None = None) -> tuple[list[dict], Counter]:
    """Token ids with labels = -100 on the prompt. Returns the examples and a count of what happened.
    Each example also says how many tokens its trace took in context (`thinking_tokens`).

    overflow: 'drop' removes a sequence longer than max_seq_len, 'truncate' cuts it (the end of
    the trace is lost); a sequence with no supervised token left is dropped either way.
    """
    if overflow not in ("drop", "truncate"):
        raise ConfigError(f"data.overflow={overflow!r}: expected 'drop' or 'truncate'")
    counts: Counter = Counter()
    examples = []
    rendered = [render_chat(rec, tokenizer, style, system_prompt) for rec in records]
    prompts = encode_batch(tokenizer, [p for p, _ in rendered])
    completions = encode_batch(tokenizer, [c for _, c in rendered])
    for rec, (_, completion), p_enc, c_enc in zip(records, rendered, prompts, completions):
        p_ids, c_ids = p_enc.ids, c_enc.ids
        ids, labels = p_ids + c_ids, [IGNORE_INDEX] * len(p_ids) + c_ids
        thinking_tokens = _span_tokens(c_enc, completion, rec.thinking)
        if len(ids) > max_seq_len:
            if overflow == "drop":
                counts["dropped_too_long"] += 1
                continue
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
            if len(p_ids) >= max_seq_len:   # nothing supervised is left
                counts["dropped_prompt_too_long"] += 1
                continue
            counts["truncated"] += 1
        counts["kept"] += 1
        examples.append({"input_ids": ids, "labels": labels, "id": rec.id, "thinking_tokens": thinking_tokens,
                         "supervised_tokens": len(ids) - len(p_ids)})
    return examples, counts

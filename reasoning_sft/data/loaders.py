"""Loaders for the papers' datasets into canonical records.

`path` is a local .jsonl / .json / .parquet file or a hub dataset name (read through `datasets`,
which caches it; offline, a clear error says so). A row that lacks what the loader needs raises an
error naming the file and the row.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.data.records import Record


class Loaded(list):
    """The records a loader produced, and what it skipped under `on_error=skip`, so the data card
    accounts for every input row."""

    def __init__(self, records=(), skipped: dict | None = None):
        super().__init__(records)
        self.skipped = skipped or {}


def _fail(error: DataError, on_error: str, skipped: list[str] | None) -> None:
    if on_error == "raise" or skipped is None:
        raise error
    skipped.append(str(error))


def missing_local_file(path: str) -> str | None:
    """The problem with a local source that is not there (None: it is, or `path` names a hub dataset):
    checked by the stages before any run dir, and by read_rows."""
    p = Path(path)
    if p.suffix in (".jsonl", ".json", ".parquet") and not p.is_file():
        return f"{path}: no such file"
    return None


def source_problems(source, key: str = "data.source") -> list[str]:
    """A source node's local file that is not there, named by its key (for the stages' checks before any
    run dir; a hub id is left to its loader)."""
    path = source.get("path") if hasattr(source, "get") else None
    problem = missing_local_file(str(path)) if isinstance(path, str) else None
    return [f"{key}.path={path!r}: no such file"] if problem else []


def read_rows(path: str, split: str = "train", on_error: str = "raise",
              skipped: list[str] | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (where, row): `where` is `file:line` or `dataset[split][i]`, for error messages.
    With on_error='skip', a malformed line is recorded in `skipped` and passed over."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"data.source.on_error={on_error!r}: expected 'raise' or 'skip'")
    p = Path(path)
    if p.suffix in (".jsonl", ".json", ".parquet"):
        if missing_local_file(path):
            raise DataError(missing_local_file(path))
        if p.suffix == ".jsonl":
            with open(p, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        _fail(DataError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})"),
                              on_error, skipped)
                        continue
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        _fail(DataError(f"{path}:{lineno}: not valid JSON ({e.msg})"), on_error, skipped)
                        continue
                    if not isinstance(row, dict):
                        _fail(DataError(f"{path}:{lineno}: expected a JSON object per line"), on_error, skipped)
                        continue
                    yield f"{path}:{lineno}", row
        elif p.suffix == ".json":
            rows = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise DataError(f"{path}: expected a JSON list of objects")
            for i, row in enumerate(rows):
                yield f"{path}[{i}]", row
        else:
            import pyarrow.parquet as pq
            for i, row in enumerate(pq.read_table(p).to_pylist()):
                yield f"{path}[{i}]", row
        return
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataError(f"data.source.path={path!r} is neither a local .jsonl/.json/.parquet file nor "
                        "available offline (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set): download it "
                        "on a machine with network access or point data.source.path at a local file")
    import datasets
    try:
        rows = datasets.load_dataset(path, split=split)
    except Exception as e:  # noqa: BLE001 - the hub's many failures (offline, gated, no such dataset): one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"data.source.path={path!r}: not a local .jsonl/.json/.parquet file, and the hub dataset "
                        f"could not be loaded ({type(e).__name__}: {first}); download it where the hub is "
                        "reachable, or point data.source.path at a local file") from None
    for i, row in enumerate(rows):
        yield f"{path}[{split}][{i}]", row


def load_rows(path: str, split: str, on_error: str, make: Callable[[int, str, dict], Record]) -> Loaded:
    """`make(index, where, row)` on every row; its DataError raises or, with on_error='skip', is counted."""
    skipped: list[str] = []
    out = Loaded()
    first_seen: dict[str, str] = {}
    for where, row in read_rows(path, split, on_error, skipped):
        try:
            rec = make(len(out), where, row)
            if rec.id in first_seen:   # selection nests subsets by id: a repeated id would double records
                raise DataError(f"{where}: id {rec.id!r} repeats the one at {first_seen[rec.id]} (ids must be unique)")
            first_seen[rec.id] = where
            out.append(rec)
        except DataError as e:
            _fail(e, on_error, skipped)
    if skipped:
        out.skipped = {"count": len(skipped), "first": skipped[:5]}
    if not out:
        raise DataError(f"{path}: no records" + (f" ({len(skipped)} rows skipped, first: {skipped[0]})" if skipped
                                                 else " (the file holds no rows)"))
    return out


def _field(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if isinstance(value, list):   # s1K stores thinking_trajectories as a one-element list
        value = "\n".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {name!r} is missing or empty (row has {sorted(row)})")
    return value


def load_s1k(path: str = "simplescaling/s1K", split: str = "train",
             trajectory_field: str = "thinking_trajectories", attempt_field: str = "attempt",
             on_error: str = "raise") -> Loaded:
    """s1K (thinking_trajectories, attempt) and s1K-1.1 (gemini_/deepseek_thinking_trajectory, ...)."""
    def make(i: int, where: str, row: dict) -> Record:
        return Record(
            id=f"s1k-{i}", question=_field(row, "question", where),
            thinking=_field(row, trajectory_field, where), answer=_field(row, attempt_field, where),
            source=str(row.get("source_type", "")), domain=str(row.get("cot_type", "")),
            metadata={"solution": row.get("solution"), "source_type": row.get("source_type")},
        )
    return load_rows(path, split, on_error, make)


_SKY_THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>", re.S)
_SKY_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)<\|end_of_solution\|>", re.S)


CODE_PROMPT_PREFIX = "Generate an executable Python function generated from the given prompt."


def sharegpt_domain(user: str) -> str:
    """Sky-T1's coding samples (APPS, TACO) open with SkyThought's code instruction; the rest are math."""
    return "code" if user.lstrip().startswith(CODE_PROMPT_PREFIX) else "math"


def load_sharegpt(path: str = "bespokelabs/Bespoke-Stratos-17k", split: str = "train",
                  on_error: str = "raise", gold_field: str | None = None, domain_field: str | None = None) -> Loaded:
    """Sky-T1 / Bespoke-Stratos: `conversations[{from, value}]` with Sky-T1 thought markers.
    `gold_field`: a column with the gold answer (graded by data.keep / wrong_answers);
    `domain_field`: a column naming the domain; null: `code` for SkyThought's code prompt, else `math`."""
    def make(i: int, where: str, row: dict) -> Record:
        turns = row.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2:
            raise DataError(f"{where}: expected 'conversations' with a user and an assistant turn")
        user = next((t.get("value") for t in turns if t.get("from") in ("user", "human")), None)
        reply = next((t.get("value") for t in turns if t.get("from") in ("assistant", "gpt")), None)
        thought = _SKY_THOUGHT.search(reply or "")
        solution = _SKY_SOLUTION.search(reply or "")
        if not user or not thought or not solution or not thought.group(1).strip():
            raise DataError(f"{where}: expected a user turn and an assistant turn with a non-empty "
                            "<|begin_of_thought|>...<|end_of_thought|> and "
                            "<|begin_of_solution|>...<|end_of_solution|>")
        meta = {"system": row.get("system")}
        if gold_field:
            if row.get(gold_field) is None:
                raise DataError(f"{where}: no gold answer in column {gold_field!r} (data.source.gold_field)")
            meta["gold_answer"] = str(row[gold_field])
        domain = str(row.get(domain_field) or "") if domain_field else sharegpt_domain(user)
        return Record(id=str(row["id"]) if row.get("id") is not None else f"sharegpt-{i}", question=user.strip(),
                      thinking=thought.group(1).strip(), answer=solution.group(1).strip(), source=Path(path).stem,
                      domain=domain, metadata=meta)
    return load_rows(path, split, on_error, make)


def split_r1_trace(trace: str) -> tuple[str, str]:
    """(thinking, answer) of an R1-style output: around `</think>`, or, for a bare trace, the last
    paragraph (which holds the boxed answer) is the answer."""
    if "</think>" in trace:
        thinking, answer = trace.split("</think>", 1)
        return thinking.replace("<think>", "", 1).strip(), answer.strip()
    paragraphs = trace.rstrip().split("\n\n")
    if len(paragraphs) < 2:
        return trace.strip(), ""
    return "\n\n".join(paragraphs[:-1]).strip(), paragraphs[-1].strip()


def load_r1(path: str, split: str = "train", question_field: str = "question",
            trace_field: str = "solution", gold_field: str | None = "gold_answer",
            on_error: str = "raise", domain: str = "") -> Loaded:
    """R1-style traces (OpenThoughts, Long1K, the R1-distill traces): `<think>` ... `</think>` answer.
    `domain` labels every record (the file does not say)."""
    def make(i: int, where: str, row: dict) -> Record:
        thinking, answer = split_r1_trace(_field(row, trace_field, where))
        if not thinking or not answer:
            raise DataError(f"{where}: field {trace_field!r} has no separable thinking and answer")
        meta = {"gold_answer": str(row[gold_field])} if gold_field and gold_field in row else {}
        return Record(id=str(row.get("id", f"r1-{i}")), question=_field(row, question_field, where),
                      thinking=thinking, answer=answer, source=Path(path).stem, domain=domain, metadata=meta)
    return load_rows(path, split, on_error, make)


def load_table(path: str, fields: dict, split: str = "train", on_error: str = "raise",
               source: str | None = None) -> Loaded:
    """Any jsonl / json / parquet (or hub) table with a column mapping onto the canonical record:
    `fields.question`, `fields.thinking`, `fields.answer` (required), `fields.id`, `fields.domain`,
    `fields.gold_answer`, `fields.solution` (optional)."""
    missing = [k for k in ("question", "thinking", "answer") if not fields.get(k)]
    if missing:
        raise ConfigError(f"data.source.fields.{missing[0]}: required (the column holding the {missing[0]})")

    def make(i: int, where: str, row: dict) -> Record:
        meta = {k: row.get(fields[k]) for k in ("gold_answer", "solution") if fields.get(k)}
        meta.update({col: row.get(col) for col in (fields.get("extra") or [])})   # e.g. solver answers
        return Record(
            id=str(row.get(fields["id"], i)) if fields.get("id") else f"{Path(path).stem}-{i}",
            question=_field(row, fields["question"], where), thinking=_field(row, fields["thinking"], where),
            answer=_field(row, fields["answer"], where), source=source or Path(path).stem,
            domain=str(row.get(fields["domain"], "")) if fields.get("domain") else "", metadata=meta)
    return load_rows(path, split, on_error, make)

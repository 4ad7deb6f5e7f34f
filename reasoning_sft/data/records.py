"""The canonical record every loader produces and every later stage reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable


@dataclass
class Record:
    id: str
    question: str
    thinking: str          # the reasoning trace, without style markers
    answer: str            # the final response shown after the thinking
    source: str = ""
    domain: str = ""
    metadata: dict = field(default_factory=dict)   # e.g. gold_answer, solver grades


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[Record]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(Record(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as e:
                    raise ValueError(f"{path}:{lineno}: not a canonical record ({e})") from e
    return out


def content_hash(records: Iterable[Record]) -> str:
    """Names the exact training set: same records in the same order give the same hash."""
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(asdict(rec), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]

"""Reading W&B offline run files back, so tests check what a run really logged (wandb 0.31 ships no
reader of its own: its Go core writes them)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

# A `.wandb` file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then
# 32 KiB blocks of chunks, each `crc32c u32 | length u16 | type u8 | payload`; a record is one FULL
# chunk or FIRST, MIDDLE..., LAST. Each record is a serialized `wandb_internal_pb2.Record`.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending = 7, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:             # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk


def read_offline_run(run_file: str | Path) -> dict[str, Any]:
    """{'config': {...}, 'history': [{key: value}...], 'summary': {...}, 'run': {id, group, name}}."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "run": {}}
    for raw in _records(Path(run_file)):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "config":
            for i in rec.config.update:
                out["config"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "run":
            for i in rec.run.config.update:   # the config given to wandb.init travels with the run
                out["config"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
            out["run"] = {"id": rec.run.run_id, "group": rec.run.run_group, "name": rec.run.display_name,
                          "job_type": rec.run.job_type, "tags": list(rec.run.tags)}
    return out


def find_offline_run_file(run_dir: str | Path) -> Path:
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no offline W&B run under wandb/")
    return files[-1]

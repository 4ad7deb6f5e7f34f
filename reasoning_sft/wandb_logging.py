"""W&B on rank 0: one run per stage, config logged resolved, group = the study; and a reader of the
run files written offline (the tests and the report read logged values back from them)."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf


def override_name() -> str | None:
    """`hydra.job.override_dirname` when running under Hydra: names a sweep job by what it varies."""
    from reasoning_sft.cli import hydra_runtime
    hc = hydra_runtime()
    return (hc.job.override_dirname or None) if hc is not None else None


def has_wandb_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (`wandb login` writes it there)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(cfg: DictConfig, run_dir: Path) -> str:
    """`logger.mode`; `auto` (the default) is online with credentials, else offline, said in one line."""
    mode = cfg.logger.mode
    if mode not in ("auto", "online", "offline", "disabled"):
        from reasoning_sft.errors import ConfigError
        raise ConfigError(f"logger.mode={mode!r}: expected auto, online, offline or disabled")
    if mode != "auto":
        return mode
    if has_wandb_credentials():
        return "online"
    print(f"W&B: no API key (WANDB_API_KEY or `wandb login`): logging offline under {run_dir}/wandb; "
          "upload later with `wandb sync <that dir>/offline-run-*`", file=sys.stderr)
    return "offline"


def init_wandb(cfg: DictConfig, run_dir: Path, job_type: str, extra_config: dict | None = None,
               resume: bool = False):
    """Start the run (rank 0 only; the caller checks). Returns the run, or None when disabled.
    The run id is kept in `<run dir>/wandb_run_id`: a resumed training run continues the same W&B run."""
    if not cfg.logger.enabled or cfg.logger.mode == "disabled":
        return None
    mode = wandb_mode(cfg, run_dir)
    import wandb

    os.environ.setdefault("WANDB_START_METHOD", "thread")  # a Hydra-launched process can hang otherwise
    config = OmegaConf.to_container(cfg, resolve=True)
    config.update(extra_config or {})
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    run = wandb.init(
        project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group,
        job_type=job_type, name=cfg.logger.name or override_name() or cfg.experiment_name,
        tags=list(cfg.logger.tags), config=config, dir=str(run_dir), mode=mode,
        reinit="finish_previous", id=run_id, resume="allow" if run_id else None,
    )
    id_file.write_text(run.id)
    return run


# --- reading offline run files -----------------------------------------------------------------
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


SAMPLE_COLUMNS = ["task", "id", "sample", "prompt", "generation", "extracted", "gold", "correct", "grading",
                  "thinking_tokens", "waits", "capped"]


def log_eval(run, results: dict, run_dir: Path) -> None:
    """Evaluation metrics (eval/<task>/<metric>) and a table of every sample (eval/samples)."""
    import wandb
    run.log({f"eval/{task}/{k}": v for task, metrics in results.items() for k, v in metrics.items()
             if isinstance(v, (int, float))})
    with open(run_dir / "eval_samples.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    run.log({"eval/samples": wandb.Table(columns=SAMPLE_COLUMNS,
                                         data=[[r.get(c) for c in SAMPLE_COLUMNS] for r in rows])})

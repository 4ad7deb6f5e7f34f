"""Run dirs: one per stage run, locked by the command that writes it, holding its config.yaml and
summary.json (written atomically). The ground floor: imports nothing from the package but errors."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reasoning_sft.errors import ConfigError


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)   # a reader never sees half a summary


@dataclass(frozen=True)
class RunContext:
    """What the command line said, read once by the stage (cli.run_context) and handed down: the
    library never asks Hydra's runtime. The ranks of a launched run read it from run_context.json."""
    overrides: tuple[str, ...] = ()      # the command line's overrides (the model card lists them)
    override_dirname: str | None = None  # names a sweep job by what it varies (the W&B run name)

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / "run_context.json", asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> "RunContext":
        path = run_dir / "run_context.json"
        if not path.is_file():
            return cls()
        d = json.loads(path.read_text())
        return cls(tuple(d.get("overrides", ())), d.get("override_dirname"))


OPENED_RUN_DIRS: set[Path] = set()   # run dirs this process has written into (failures are recorded there)
LOCK_FILE = ".lock"
_HELD_LOCKS: set[Path] = set()


def lock_run_dir(run_dir: Path) -> None:
    """One command per run dir: `<run dir>/.lock` names the holder (host, pid, command). A second
    command is refused at once, naming it; a lock whose process is gone (same host) is taken over.
    Workers started by the holder write under its lock (they never take it)."""
    import socket
    import time
    if os.environ.get("RSFT_WORKER") == "1" or int(os.environ.get("RANK", "0")) != 0:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = (run_dir / LOCK_FILE).resolve()
    if lock in _HELD_LOCKS:
        return
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
                lock.unlink(missing_ok=True)     # stale: its process is gone
                continue
            raise ConfigError(f"{run_dir} is in use by `{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
                              f"{holder.get('host', '?')}, since {holder.get('since', '?')}): one run per run dir; "
                              f"if that run is gone, delete {lock}")
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        _HELD_LOCKS.add(lock)
        return
    raise ConfigError(f"{lock}: could not take the run dir's lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_run_dirs() -> None:
    for lock in list(_HELD_LOCKS):
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():
                lock.unlink()
        except (OSError, json.JSONDecodeError):
            pass
        _HELD_LOCKS.discard(lock)


def open_run_dir(cfg: DictConfig) -> Path:
    """The stage's run dir (`paths.output_dir`), created, holding the resolved config.yaml. From here on
    the config is settled: read-only, so nothing below the stage can change what config.yaml says."""
    run_dir = Path(cfg.paths.output_dir)
    lock_run_dir(run_dir)
    OPENED_RUN_DIRS.add(run_dir.resolve())
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "config.yaml.tmp"
    OmegaConf.save(cfg, tmp, resolve=True)
    tmp.replace(run_dir / "config.yaml")   # workers and resumes read it: never half written
    OmegaConf.set_readonly(cfg, True)
    return run_dir


def finish_stage(run_dir: Path, stage: str, **results: Any) -> dict:
    """Write and return the stage's machine-readable summary.json."""
    summary = {"stage": stage, "run_dir": str(run_dir), "status": "finished", **results}
    write_json(run_dir / "summary.json", summary)
    return summary

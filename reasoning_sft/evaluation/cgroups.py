"""A cgroup of its own per sandboxed program (sandbox.py): memory and process count for every process
the program starts, counted together and enforced by the kernel, pages of a memfd or shared memory
included (they count against no address space, so `RLIMIT_AS` alone bounded no program: issue 38).

The evaluator makes the group under its own (cgroup v2 where this process's group delegates `memory`
and `pids` to its children, else the v1 `memory` and `pids` hierarchies), sets its limits, and hands
the child the `cgroup.procs` files: the child joins them first thing, before it contains itself, so
everything it and the program start is inside. Out of memory, the kernel kills inside the group (the
evaluator is outside it). When the program is done the group is emptied (SIGKILL to anything still in
it) and removed. Where no group can be made (an unprivileged user without a delegated cgroup), `make`
says why and the sandbox records it as missing: `code.sandbox=strict` refuses.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

_names = itertools.count()


@dataclass
class ProgramCgroup:
    dirs: list[Path] = field(default_factory=list)
    kind: str = ""

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def peak_mb(self) -> float | None:
        """The most memory the program's processes held together (the kernel's count), MB."""
        for name in ("memory.peak", "memory.max_usage_in_bytes"):   # v2 (5.19+), v1
            path = self.dirs[0] / name
            if path.exists():
                try:
                    return round(int(path.read_text().split()[0]) / (1 << 20), 1)
                except (OSError, ValueError):
                    return None
        return None

    def remove(self) -> None:
        """SIGKILL whatever is still inside, then remove the groups (a few tries while the dead exit)."""
        for d in self.dirs:
            for _ in range(100):
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _own_groups() -> tuple[dict[str, str], str | None]:
    """({v1 controller: this process's group path}, its v2 group path or None), from /proc/self/cgroup."""
    v1, v2 = {}, None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            v1[c] = path
    return v1, v2


def _mounts() -> tuple[dict[str, Path], Path | None]:
    """({v1 controller: mount point}, the v2 mount point or None), from /proc/self/mountinfo."""
    v1, v2 = {}, None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, options = right.split(" ")[:3]
        mount_point = Path(left.split(" ")[4])
        if fstype == "cgroup2":
            v2 = v2 or mount_point
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids"):
                    v1[option] = mount_point
    return v1, v2


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def make(memory_bytes: int, processes: int) -> tuple[ProgramCgroup | None, str | None]:
    """A program's group with its limits: (the group, None), or (None, why none could be made)."""
    try:
        own_v1, own_v2 = _own_groups()
        mounts_v1, mount_v2 = _mounts()
    except OSError as e:
        return None, f"cgroups unreadable ({e.strerror})"
    name = f"rsft-sandbox-{os.getpid()}-{next(_names)}"
    why = []
    if mount_v2 is not None and own_v2 is not None:
        parent = mount_v2 / own_v2.lstrip("/")
        try:
            delegated = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            delegated = []
        if {"memory", "pids"} <= set(delegated):
            group = ProgramCgroup([parent / name], "v2")
            try:
                group.dirs[0].mkdir()
                _write(group.dirs[0] / "memory.max", str(memory_bytes))
                if (group.dirs[0] / "memory.swap.max").exists():
                    _write(group.dirs[0] / "memory.swap.max", "0")
                _write(group.dirs[0] / "pids.max", str(processes))
                return group, None
            except OSError as e:
                group.remove()
                why.append(f"cgroup v2 {parent}: {e.strerror}")
        else:
            why.append(f"cgroup v2 {parent} does not delegate memory and pids")
    if {"memory", "pids"} <= set(mounts_v1) and {"memory", "pids"} <= set(own_v1):
        group = ProgramCgroup([mounts_v1[c] / own_v1[c].lstrip("/") / name for c in ("memory", "pids")], "v1")
        try:
            for d in group.dirs:
                d.mkdir()
            memory = group.dirs[0]
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():   # no swap beyond the limit either
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(group.dirs[1] / "pids.max", str(processes))
            return group, None
        except OSError as e:
            group.remove()
            why.append(f"cgroup v1 {group.dirs[0].parent}: {e.strerror}")
    elif not why:
        why.append("no cgroup v2 or v1 memory and pids hierarchy mounted")
    return None, "; ".join(why)

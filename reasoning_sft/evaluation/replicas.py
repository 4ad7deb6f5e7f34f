"""Data-parallel generation (`eval.data_parallel_size`, `curation.difficulty.solver_data_parallel_size`:
the name vLLM and lighteval use): N replicas, each its own engine in its own process, working through
one list of work items and merged back in the list's order.

A work item is what one process would have done with its engine anyway: for the HF backend one batch
of `eval.batch_size` prompts exactly as the one-replica run forms it (the same rows, the same padding,
so greedy generations are the same tokens), for vLLM (which batches itself) an equal share of the
prompts. Sampled rows draw from their own seeds (decoding.sample_seed: task, problem, sample index), so
no sample depends on the replica that drew it or on N. Items go to whichever replica is free (long
generations do not hold the others back); results are kept by the item's index.

Devices: on GPUs replica r sees GPUs r*t .. r*t+t-1 (t: vLLM's tensor_parallel_size, else 1); on CPU
each replica gets its share of this process's cores as torch threads. A replica that fails to load or
raises stops the evaluation with its number and its error; a replica that dies is named with its exit
code; the replicas die with this process (a parent-death signal), and are stopped when it is done.
"""

from __future__ import annotations

import atexit
import os
import signal
import traceback
from dataclasses import dataclass
from typing import Callable

from reasoning_sft.errors import ConfigError


class ReplicaFailed(RuntimeError):
    """A replica could not load its engine, raised on a work item, or died."""


@dataclass(frozen=True)
class Placement:
    """What replica r may use: CUDA devices (None on CPU) or torch threads."""
    devices: str | None
    threads: int


def devices_per_replica(ev) -> int:
    """The GPUs one replica of the eval group's engine takes: vLLM's tensor-parallel group, else one."""
    return ev.vllm.tensor_parallel_size if ev.backend == "vllm" else 1


def placements(n: int, devices_per_replica: int = 1, key: str = "eval.data_parallel_size") -> list[Placement]:
    """One placement per replica; more GPUs asked for than this machine has is a ConfigError naming `key`."""
    import torch
    if torch.cuda.is_available():
        have = torch.cuda.device_count()
        if n * devices_per_replica > have:
            raise ConfigError(f"{key}={n}: {n} replicas x {devices_per_replica} GPU(s) each, this machine has {have}")
        return [Placement(",".join(str(r * devices_per_replica + k) for k in range(devices_per_replica)), 0)
                for r in range(n)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return [Placement(None, max(1, cores // n)) for _ in range(n)]


def _die_with_parent() -> None:
    """SIGKILL when the process that started this one goes (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _replica_main(conn, build: Callable, placement: Placement, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:    # the parent went before the signal was armed
        os._exit(1)
    if placement.devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = placement.devices
    else:
        os.environ["OMP_NUM_THREADS"] = str(placement.threads)
    try:
        import torch
        if placement.devices is None:
            torch.set_num_threads(placement.threads)
        engine = build()
        conn.send(("ready", getattr(engine, "dtype", None)))
    except BaseException:   # noqa: BLE001 - a replica's every failure goes to the parent, by name
        conn.send(("error", None, traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            break
        index, fn, args = message
        try:
            conn.send(("done", index, fn(engine, *args)))
        except BaseException:   # noqa: BLE001
            conn.send(("error", index, traceback.format_exc()))
            return
    close = getattr(engine, "close", None)
    if close:
        close()


class ReplicaPool:
    """N engines in N processes behind an engine's face (tokenizer, dtype, batches_itself) and `map`.
    Build it with the parent's tokenizer (prompts are rendered and budgets counted here) and `build`, a
    picklable callable that returns the engine in a replica."""
    hf_model = None   # no model in this process: lm-eval's log-likelihood tasks need one replica

    def __init__(self, build: Callable, n: int, tokenizer, batches_itself: bool, devices_per_replica: int = 1,
                 key: str = "eval.data_parallel_size"):
        import multiprocessing as mp
        self.tokenizer, self.batches_itself, self.size, self.key = tokenizer, batches_itself, n, key
        self.placements = placements(n, devices_per_replica, key)
        context = mp.get_context("spawn")   # a fresh interpreter: no forked CUDA or OpenMP state
        self.conns, self.procs = [], []
        # a pool nobody closed (an exception on the way) is closed at exit, before multiprocessing's own
        # exit handler would wait for its replicas (they are not daemons: vLLM's engine starts processes)
        atexit.register(self.close)
        try:
            for p in self.placements:
                ours, theirs = context.Pipe()
                proc = context.Process(target=_replica_main, args=(theirs, build, p, os.getpid()),
                                       name=f"replica-{len(self.procs)}")
                proc.start()
                theirs.close()
                self.conns.append(ours)
                self.procs.append(proc)
            self.dtype = None
            for r in range(n):   # every engine loaded before any work: a replica that cannot load fails now
                kind, *rest = self._receive(r)
                if kind == "error":
                    raise ReplicaFailed(self._says(r, "could not load its engine", rest[1]))
                self.dtype = rest[0]
        except BaseException:
            self.close()
            raise

    def _says(self, r: int, what: str, tb: str) -> str:
        last = tb.strip().splitlines()[-1] if tb else ""
        return f"{self.key}: replica {r} of {self.size} {what}: {last}\n{tb}"

    def _receive(self, r: int):
        from multiprocessing.connection import wait
        conn, proc = self.conns[r], self.procs[r]
        ready = wait([conn, proc.sentinel])
        if conn in ready:
            try:
                return conn.recv()
            except EOFError:
                pass
        proc.join(5)
        raise ReplicaFailed(f"{self.key}: replica {r} of {self.size} died (exit code {proc.exitcode})")

    def map(self, fn: Callable, items: list[tuple], done: Callable[[object], None] = lambda result: None) -> list:
        """fn(engine, *item) for every item on whichever replica is free; the results in the items' order.
        `done(result)` is called as each item comes back (a progress bar)."""
        from multiprocessing.connection import wait
        results: dict[int, object] = {}
        pending = list(range(len(items)))[::-1]
        busy: dict[int, int] = {}    # replica -> item
        for r in range(self.size):
            if pending:
                i = pending.pop()
                self.conns[r].send((i, fn, items[i]))
                busy[r] = i
        while busy:
            by_handle = {}
            for r in busy:
                by_handle[self.conns[r]] = r
                by_handle[self.procs[r].sentinel] = r
            for handle in wait(list(by_handle)):
                r = by_handle[handle]
                if r not in busy:
                    continue
                kind, index, *rest = self._receive(r)
                if kind == "error":
                    raise ReplicaFailed(self._says(r, f"failed on work item {index}", rest[0]))
                results[index] = rest[0]
                done(rest[0])
                del busy[r]
                if pending:
                    i = pending.pop()
                    self.conns[r].send((i, fn, items[i]))
                    busy[r] = i
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        """Stop every replica (a clean stop, then SIGKILL after 30 s)."""
        for conn in self.conns:
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []

    def __enter__(self) -> ReplicaPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_items(engine, fn: Callable, items: list[tuple], done: Callable[[object], None] = lambda result: None) -> list:
    """fn(engine, *item) for every item: over the replicas of a ReplicaPool, else here, in order."""
    if isinstance(engine, ReplicaPool):
        return engine.map(fn, items, done)
    results = []
    for item in items:
        results.append(fn(engine, *item))
        done(results[-1])
    return results

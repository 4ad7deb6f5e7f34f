"""CPU training: keep freed tensor memory in the process for the next step.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh `mmap` and
returns it to the system on free. A long packed row makes many such tensors per step (activations,
their gradients, logits chunks), so every step faults in and zeroes them again, page by page: at 32k
tokens on the tiny model that was a third of the step (`benchmarks/bench_long_traces.py`). Serving
them from the heap and never trimming it makes the second step reuse the first step's pages, which
is what PyTorch's CPU tuning guide gets from jemalloc / tcmalloc. GPU memory is not affected (CUDA
has its own caching allocator); other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and do not trim it. True when glibc took the settings."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))

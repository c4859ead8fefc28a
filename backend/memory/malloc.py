"""glibc's mmap threshold, fixed once per process: what ONNX sessions and animation jobs set before they allocate.

With glibc's sliding threshold, freed multi-MB buffers stay in the heap and the next ones pile
on top; a fixed threshold (MALLOC_MMAP_THRESHOLD_KB) maps every block above it on its own, so
freeing it hands the memory back to the OS. ONNX Runtime without its arena peaked at 1.3-1.7 GB
without it (backend/pipelines/onnx_session.py); an animation job's RSS stayed ~150 MB above its
live data after each stage freed its network (docs/BENCHMARKS.md "Animation").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
_mallopt_lock = threading.Lock()
_mallopt_done: int | None = None


def set_malloc_mmap_threshold(threshold_kb: int) -> bool:
    """Fix glibc's mmap threshold (also disables its sliding adjustment); False off glibc or when 0."""
    global _mallopt_done
    if threshold_kb <= 0:
        return False
    with _mallopt_lock:
        if _mallopt_done == threshold_kb:
            return True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_kb * 1024))
        except (OSError, AttributeError):
            return False
        if ok:
            _mallopt_done = threshold_kb
        return ok

"""``steady_heap()``: glibc's mmap threshold kept fixed for a long-running command's process.

A command's own choice, not the library's (the library changes no process-wide setting): the
commands whose memory must not grow with their input or their running time (``report``,
``batch``, ``watch`` and ``broker --watch``) call it first.
"""

from __future__ import annotations

__all__ = ["steady_heap"]

#: glibc's ``mallopt`` parameter for the mmap threshold.
_M_MMAP_THRESHOLD = -3


def steady_heap() -> None:
    """Keep glibc's mmap threshold at its initial 128 KiB for this process (and the processes
    it forks). Why: glibc raises the threshold each time a large mapped block is freed, after
    which blocks of that size come from the heap, which a long run fragments (a dict's table
    resized, numpy temporaries, a block of a table being written): ``report`` on the benchmark
    capture played five times peaked 12 MB (10 %) above one copy with it moving, 5 MB with it
    fixed (``benchmarks/report.py --scale 5``); ``batch --jobs 1`` on 140,000 QoS 1 exchanges
    and five times as many, 11 MB moving, 6 MB fixed; ``watch`` fed 20 million packets
    (``benchmarks/watch.py``) rose to 154 MB moving while its live objects stayed flat.
    Nothing on a C library without ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(128 * 1024))

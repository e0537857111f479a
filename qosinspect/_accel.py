"""Whether the optional C accelerator (``qosinspect._speedups``) is used, and the switch for it.

qosinspect's hot paths (stream framing, the capture record walk and TCP fast path, packet event
construction, JSON lines) are written in Python, which is the reference implementation: it
keeps every rule and decides every unusual case. When the package was built with a C compiler,
``qosinspect._speedups`` takes the common cases of those paths and hands everything else back
to the Python code, producing identical results (``tests/speedups`` checks it differentially,
on random and mutated bytes and on every capture). Without a compiler the package installs and
runs the same, only slower.

``QOSINSPECT_PURE=1`` in the environment forces the pure-Python path for the whole process.
:func:`enabled` is read when a decoder, pipeline or formatter is created, so tests can build
objects of both kinds in one process with :func:`pure`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["enabled", "implementation", "pure", "speedups"]


try:
    from . import _speedups as _built
except ImportError:  # built without a C compiler: the pure-Python path
    _built = None  # type: ignore[assignment]

#: The extension module, or None when it is not built or QOSINSPECT_PURE is set.
speedups = None if os.environ.get("QOSINSPECT_PURE", "") not in ("", "0") else _built
_forced_pure = 0


def enabled() -> bool:
    """True when objects created now use the C accelerator."""
    return speedups is not None and not _forced_pure


def implementation() -> str:
    """``"c"`` or ``"python"``: what objects created now use (benchmarks print it)."""
    return "c" if enabled() else "python"


@contextmanager
def pure() -> Iterator[None]:
    """Objects created inside this block use the pure-Python path (for differential tests)."""
    global _forced_pure
    _forced_pure += 1
    try:
        yield
    finally:
        _forced_pure -= 1

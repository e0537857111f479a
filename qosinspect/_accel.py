"""Which compiled parts run: the C accelerator of the byte-level paths and the mypyc build of the
analysis, and the switch that turns both off.

**The analysis** (the QoS rules: :mod:`qosinspect.analysis` and the transition table) is written
once, in Python. ``setup.py`` compiles the modules listed in :data:`COMPILED` with mypyc when it
can; the compiled extension modules sit beside the ``.py`` files and are the ones imported.
``QOSINSPECT_PURE=1`` installs :class:`_SourceFirst` before anything imports them, so the
``.py`` files run instead (the tests compare both). :func:`analysis_implementation` says which
one this process runs.

**The C accelerator** (``qosinspect._speedups``, below) holds no protocol rule.

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

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "analysis_implementation", "describe", "enabled", "implementation",
           "pure", "speedups", "stale_compiled"]

#: The modules setup.py compiles with mypyc (its COMPILED list, as module names).
COMPILED = (
    "qosinspect.mqtt.transitions",
    "qosinspect.analysis.records",
    "qosinspect.analysis.state",
    "qosinspect.analysis.conntable",
    "qosinspect.analysis.options",
    "qosinspect.analysis.logs",
    "qosinspect.analysis.deliveries",
    "qosinspect.analysis.exchanges",
    "qosinspect.analysis.sessions",
    "qosinspect.analysis.correlate",
    "qosinspect.analysis.diagnoses.facts",
    "qosinspect.analysis.diagnoses.delivery",
    "qosinspect.analysis.diagnoses.core",
)
_PURE = os.environ.get("QOSINSPECT_PURE", "") not in ("", "0")


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the ``.py`` source of the :data:`COMPILED` modules even where a compiled
    extension module sits beside it (installed on ``QOSINSPECT_PURE=1``)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED or not path:
            return None
        source = Path(path[0]) / (fullname.rpartition(".")[2] + ".py")
        if not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


if _PURE and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceFirst())


def analysis_implementation() -> str:
    """``"mypyc"`` when the analysis modules this process imports are compiled, ``"python"``
    when they are the ``.py`` files (no compiler at install time, or ``QOSINSPECT_PURE=1``);
    ``"mixed"`` would be a broken install (some compiled, some not)."""
    kinds = set()
    for name in COMPILED:
        module = importlib.import_module(name)
        origin = getattr(module, "__file__", None) or ""
        kinds.add("python" if origin.endswith(".py") else "mypyc")
    return kinds.pop() if len(kinds) == 1 else "mixed"


def stale_compiled() -> list[str]:
    """Compiled modules whose ``.py`` source changed since they were built (so the compiled one,
    which is what runs, is out of date; ``make venv`` rebuilds). setup.py records the sha256 of
    each source it compiled in ``_compiled.json``."""
    if analysis_implementation() != "mypyc":
        return []
    package = Path(__file__).parent
    manifest = package / "_compiled.json"
    if not manifest.exists():
        return [f"{manifest} is missing"]
    built: dict[str, str] = json.loads(manifest.read_text())
    stale = []
    for name in COMPILED:
        rel = name.replace(".", "/") + ".py"
        source = package.parent / rel
        if source.exists() and built.get(rel) != hashlib.sha256(source.read_bytes()).hexdigest():
            stale.append(name)
    return stale


def describe() -> str:
    """One line per compiled part, for ``qosinspect --version`` and the benchmarks."""
    c = ("built" if _built is not None else "not built") + (
        ", off (QOSINSPECT_PURE)" if _built is not None and speedups is None else "")
    return (f"analysis: {analysis_implementation()}\n"
            f"C accelerator (byte-level paths): {c}")


try:
    from . import _speedups as _built
except ImportError:  # built without a C compiler: the pure-Python path
    _built = None  # type: ignore[assignment]

#: The extension module, or None when it is not built or QOSINSPECT_PURE is set.
speedups = None if _PURE else _built
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

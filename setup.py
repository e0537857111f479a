"""Build of the optional compiled parts; everything else is declared in pyproject.toml.

Two optional steps, each skipped quietly (the package then installs and runs in pure Python,
slower; ``qosinspect --version`` and the benchmarks say which ran, see qosinspect/_accel.py):

* ``qosinspect._speedups``: C for byte-level work that holds no protocol rule (the pcap/pcapng
  record walk, the TCP fast path, MQTT stream framing, JSON lines).
* The analysis compiled with mypyc: the Python modules in ``COMPILED`` (the one copy of every
  QoS rule, typed ``mypy --strict``) turned into C extension modules by mypyc, as mypy and black
  ship themselves. The ``.py`` files stay the source; the compiled modules shadow them on import.
  ``QOSINSPECT_NO_MYPYC=1`` at install time skips this step; ``QOSINSPECT_PURE=1`` at run time
  loads the ``.py`` files instead (``_accel.install_pure_finder``).

A failure of either (no compiler, no Python headers, mypyc missing) is a warning: if any one of
the mypyc extensions did not build, all of them are removed, since a compiled module without its
shared library would not import.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from glob import glob
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: The analysis modules compiled by mypyc (kept in step with qosinspect/_accel.py COMPILED).
COMPILED = [
    "qosinspect/mqtt/transitions.py",
    "qosinspect/analysis/records.py",
    "qosinspect/analysis/state.py",
    "qosinspect/analysis/options.py",
    "qosinspect/analysis/logs.py",
    "qosinspect/analysis/deliveries.py",
    "qosinspect/analysis/exchanges.py",
    "qosinspect/analysis/sessions.py",
    "qosinspect/analysis/correlate.py",
]
#: The mypyc group: its shared library is qosinspect/analysis__mypyc (inside the package).
GROUP = "qosinspect.analysis"


def speedups() -> Extension:
    return Extension(
        "qosinspect._speedups",
        sources=sorted(glob("qosinspect/_csrc/*.c")),
        depends=sorted(glob("qosinspect/_csrc/*.h")),
        extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                            "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
        optional=True,
    )


def mypyc_extensions() -> list[Extension]:
    if os.environ.get("QOSINSPECT_NO_MYPYC", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypyc is not installed: the analysis runs interpreted", file=sys.stderr)
        return []
    try:
        extensions: list[Extension] = mypycify(COMPILED, opt_level="3", group_name=GROUP)
    except BaseException as exc:  # mypyc exits through SystemExit on a type error
        print(f"warning: mypyc failed ({exc!r}): the analysis runs interpreted", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True
    return extensions


class BuildExt(build_ext):
    """build_ext that adds the mypyc modules when it runs (mypyc type-checks and generates C
    then, not each time pip asks setup.py for metadata) and removes every one of them when one
    (or their shared library) did not build."""

    def finalize_options(self) -> None:
        self._mypyc = mypyc_extensions()
        self.distribution.ext_modules = [*(self.distribution.ext_modules or []), *self._mypyc]
        super().finalize_options()

    def run(self) -> None:
        super().run()
        built = [Path(self.get_ext_fullpath(ext.name)) for ext in self._mypyc]
        if not all(p.exists() for p in built):
            print("warning: the mypyc build of the analysis failed: it runs interpreted",
                  file=sys.stderr)
            for p in built:
                p.unlink(missing_ok=True)
        elif built:
            # What was compiled, by content: qosinspect._accel.stale_compiled() compares it with
            # the sources (mypyc leaves a module's files untouched when its C did not change, so
            # file times cannot tell).
            manifest = Path(self.get_ext_fullpath("qosinspect._speedups")).with_name(
                "_compiled.json")
            manifest.write_text(json.dumps(
                {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in COMPILED},
                indent=1) + "\n")


options: dict[str, Any] = {"ext_modules": [speedups()], "cmdclass": {"build_ext": BuildExt}}
setup(**options)

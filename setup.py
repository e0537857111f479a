"""Build of the optional compiled parts; everything else is declared in pyproject.toml.

Two optional steps, each skipped quietly (the package then installs and runs in pure Python,
slower; ``qosinspect --version`` and the benchmarks say which ran, see qosinspect/_accel.py):

* ``qosinspect._speedups``: C for byte-level work that holds no protocol rule (the pcap/pcapng
  record walk, the TCP fast path, MQTT stream framing, JSON lines), built against the stable ABI
  (``Py_LIMITED_API`` 3.11, the oldest Python supported): one ``_speedups.abi3.so`` serves every
  CPython from 3.11 on, and the wheel is tagged ``abi3``.
* The analysis compiled with mypyc: the Python modules in ``COMPILED`` (the one copy of every
  QoS rule, typed ``mypy --strict``) turned into C extension modules by mypyc, as mypy and black
  ship themselves. The ``.py`` files stay the source; the compiled modules shadow them on import.
  ``QOSINSPECT_NO_MYPYC=1`` at install time skips this step; ``QOSINSPECT_PURE=1`` at run time
  loads the ``.py`` files instead (``_accel._SourceFirst``).

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
    "qosinspect/analysis/conntable.py",
    "qosinspect/analysis/options.py",
    "qosinspect/analysis/logs.py",
    "qosinspect/analysis/deliveries.py",
    "qosinspect/analysis/exchanges.py",
    "qosinspect/analysis/sessions.py",
    "qosinspect/analysis/correlate.py",
    "qosinspect/analysis/diagnoses/facts.py",
    "qosinspect/analysis/diagnoses/delivery.py",
    "qosinspect/analysis/diagnoses/core.py",
]
#: The mypyc group: its shared library is qosinspect/analysis__mypyc (inside the package).
GROUP = "qosinspect.analysis"
#: The stable ABI the C accelerator is built against: that of the oldest Python supported
#: (pyproject.toml requires-python >= 3.11), as Py_LIMITED_API and as the wheel's tag.
LIMITED_API = 0x030B0000
WHEEL_ABI = "cp311"


def speedups() -> Extension:
    return Extension(
        "qosinspect._speedups",
        sources=sorted(glob("qosinspect/_csrc/*.c")),
        depends=sorted(glob("qosinspect/_csrc/*.h")),
        define_macros=[("Py_LIMITED_API", f"0x{LIMITED_API:08X}")],
        py_limited_api=True,
        # (a function the limited API lacks must stop the build, not fail at import)
        extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra",
                            "-Werror=implicit-function-declaration", "-Wno-unused-parameter",
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
        # The build environment has mypy but not the project's other packages (numpy, pandas and
        # their stubs): modules that are not compiled are followed silently, and a package mypy
        # cannot find is Any (the compiled modules only pass numpy arrays through).
        extensions: list[Extension] = mypycify(
            ["--ignore-missing-imports", "--follow-imports=silent", *COMPILED], opt_level="3",
            group_name=GROUP)
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
        self._remove_stale_speedups()
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

    def _remove_stale_speedups(self) -> None:
        """Once ``_speedups.abi3.so`` is built, remove any version-specific build of it left
        beside it (``_speedups.cpython-311-*.so`` from before the stable ABI, which the import
        system would prefer to the new one in a checkout installed in place)."""
        built = Path(self.get_ext_fullpath("qosinspect._speedups"))
        if not built.exists():
            return
        for old in built.parent.glob("_speedups.*"):
            if old != built and old.suffix in (".so", ".pyd"):
                old.unlink()


options: dict[str, Any] = {
    "ext_modules": [speedups()],
    "cmdclass": {"build_ext": BuildExt},
    # The wheel's tag says abi3 for the C accelerator. The mypyc modules in it are built for
    # the building Python only (their file names say which); another Python skips them and
    # imports the .py files beside them (see the module docstring).
    "options": {"bdist_wheel": {"py_limited_api": WHEEL_ABI}},
}
setup(**options)

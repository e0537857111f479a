#!/usr/bin/env python3
"""Strip outputs from notebooks, so they are committed without them (``make notebooks-clean``).

Outputs hold timestamps, temporary paths and base64 images that change on every run; committed,
they would make every diff unreadable. This removes every code cell's outputs and execution
count, the per-run cell metadata Jupyter adds (``execution``, ``collapsed``, ``scrolled``) and
the kernel's version details (``language_info`` keeps only the language name). It keeps tags
(the ``parameters`` cell) and writes the file in nbformat's own layout, so saving it again from
Jupyter changes nothing.

    scripts/strip-notebooks.py [--check] [NOTEBOOK ...]    (default: notebooks/*.ipynb)

``--check`` changes nothing and exits 1, naming the notebooks that still have outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
RUN_METADATA = ("execution", "collapsed", "scrolled")


def strip(nb: Any) -> bool:
    """Remove outputs and run metadata in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        for key in RUN_METADATA:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            cell.outputs = []
            cell.execution_count = None
            changed = True
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    info = nb.metadata.get("language_info")
    if info and set(info) != {"name"}:      # the kernel fills in its exact Python version
        nb.metadata["language_info"] = {"name": info.get("name", "python")}
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only report notebooks with outputs (exit 1 if any)")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if not strip(nb):
            continue
        dirty.append(path)
        if not args.check:
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"stripped {path}")
    if args.check and dirty:
        print("notebooks with outputs (run make notebooks-clean): "
              + ", ".join(str(p) for p in dirty), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which captures a batch reads: files, folders and globs, each with the name it has in the
dataset, and the tags of each.

A capture's name (the ``capture`` column) is its path relative to what was given: the folder
for a folder (searched recursively), the fixed part before the first wildcard for a glob, the
file's own folder for a file. Why relative: a dataset moved to another machine, or built by
Dask workers that mount the captures elsewhere, still names its captures the same way.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .layout import TAG_NAME
from .storage import Place, is_url, place, reaching

__all__ = ["CAPTURE_SUFFIXES", "CaptureFile", "expand_captures", "parse_tag", "read_tags_csv",
           "tags_for"]

#: The files a folder contributes (each may also end in ``.gz``).
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


@dataclass(frozen=True)
class CaptureFile:
    """One capture to analyse: where it is and its name in the dataset."""

    path: str
    name: str


def _capture_name(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(CAPTURE_SUFFIXES)


def _is_capture(path: Path) -> bool:
    return path.is_file() and _capture_name(path.name)


def expand_captures(specs: Iterable[str]) -> list[CaptureFile]:
    """The captures named by ``specs`` (files, folders, globs), each once, in a stable order.

    A spec that names nothing (a missing file, a glob without matches, a folder without
    captures) raises :class:`FileNotFoundError` with the spec: a typo should not make an
    empty dataset.
    """
    out: dict[str, CaptureFile] = {}
    for spec in specs:
        found: list[CaptureFile] = []
        if is_url(spec):
            with reaching(spec):
                found = _remote(spec)
        elif glob.has_magic(spec):
            base = Path(_fixed_prefix(spec))
            for hit in sorted(glob.glob(spec, recursive=True)):
                p = Path(hit)
                if p.is_dir():
                    found += _folder(p, base)
                elif p.is_file():
                    found.append(CaptureFile(str(p), _relative(p, base)))
        elif Path(spec).is_dir():
            found = _folder(Path(spec), Path(spec))
        elif Path(spec).is_file():
            found = [CaptureFile(spec, Path(spec).name)]
        if not found:
            raise FileNotFoundError(f"{spec}: no capture there (files ending in "
                                    f"{', '.join(CAPTURE_SUFFIXES)}, optionally .gz)")
        for c in found:
            out.setdefault(c.path if is_url(c.path) else os.path.realpath(c.path), c)
    return list(out.values())


def _remote(spec: str) -> list[CaptureFile]:
    """The captures a URL names (a file, a folder searched recursively, a glob), with the same
    naming rules as local ones; each keeps its full URL as its path."""
    where = place(spec)
    fs, path = where.fs, where.path
    if glob.has_magic(path):
        base = _fixed_prefix(path)
        hits: list[str] = []
        for hit in sorted(fs.glob(path)):
            hits += sorted(fs.find(hit)) if fs.isdir(hit) else [hit]
    elif fs.isdir(path):
        base, hits = path, sorted(fs.find(path))
    elif fs.isfile(path):
        base, hits = posixpath.dirname(path), [path]
    else:
        return []
    return [CaptureFile(Place(fs, h).url, posixpath.relpath(h, base))
            for h in hits if _capture_name(posixpath.basename(h))]


def _folder(folder: Path, base: Path) -> list[CaptureFile]:
    return [CaptureFile(str(p), _relative(p, base))
            for p in sorted(folder.rglob("*")) if _is_capture(p)]


def _fixed_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (``.`` when there is none)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name


def parse_tag(text: str) -> tuple[str, str]:
    """``name=value`` as a pair; a name that could not be a column raises ValueError."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not TAG_NAME.match(name):
        raise ValueError(f"{text!r}: a tag is NAME=VALUE, NAME made of letters, digits and _")
    return name, value


def read_tags_csv(path: str) -> dict[str, dict[str, str]]:
    """A CSV of tags per capture: a ``capture`` column (the capture's name in the dataset, or
    its file name) and one column per tag; empty cells are no tag."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "capture" not in df.columns:
        raise ValueError(f"{path}: the tags CSV needs a 'capture' column (found: "
                         f"{', '.join(df.columns)})")
    for col in df.columns:
        if col != "capture" and not TAG_NAME.match(col):
            raise ValueError(f"{path}: column {col!r} cannot be a tag name (letters, digits, _)")
    out: dict[str, dict[str, str]] = {}
    for rec in df.to_dict("records"):
        name = str(rec.pop("capture"))
        out[name] = {str(k): str(v) for k, v in rec.items() if v != ""}
    return out


def tags_for(capture: CaptureFile, common: Mapping[str, str],
             per_capture: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The tags of one capture: ``--tag`` values, then its CSV row's (by name, else by file
    name), which win."""
    tags = dict(common)
    row = per_capture.get(capture.name)
    if row is None:
        row = per_capture.get(Path(capture.name).name, {})
    tags.update(row)
    return dict(sorted(tags.items()))

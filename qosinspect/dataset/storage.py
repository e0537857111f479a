"""Where captures and datasets live: a local folder, or any fsspec URL (``s3://``, ``gs://``,
``abfs://``, ``http(s)://`` for reading ...).

Why fsspec: it is what pandas, pyarrow, Dask and DuckDB already use to reach object stores, so
one :class:`Place` (a file system and a path in its terms) serves the batch's workers, the
reader and the SQL views alike, and the backend is the matching package's (``s3fs``,
``gcsfs``, ...) when it is installed -- fsspec names the package to install when it is not. A
local path stays on the local file system, with the atomic renames a local dataset relies on.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["Place", "StoreError", "is_url", "place", "reaching"]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a place through fsspec (``file://`` is a local path)."""
    s = os.fspath(text)
    return bool(_URL.match(s)) and not s.startswith("file://")


@dataclass(frozen=True)
class Place:
    """A file system and a path on it (no trailing ``/``); picklable, so a task carries it to
    a Dask worker."""

    fs: AbstractFileSystem
    path: str

    @property
    def local(self) -> bool:
        protocol = self.fs.protocol
        return (protocol if isinstance(protocol, str) else protocol[0]) in ("file", "local")

    @property
    def url(self) -> str:
        """The path as the user writes it: a URL, or a local path."""
        return self.path if self.local else self.fs.unstrip_protocol(self.path)

    def child(self, *parts: str) -> Place:
        return Place(self.fs, posixpath.join(self.path, *parts))

    @property
    def arrow_fs(self) -> Any:
        """What pyarrow takes as ``filesystem=`` for this place: None (its own, faster, local
        one) for a local path."""
        return None if self.local else self.fs

    def isdir(self) -> bool:
        return bool(self.fs.isdir(self.path))


def place(location: str | os.PathLike[str]) -> Place:
    """The :class:`Place` of a local path or a URL. A URL whose backend is missing raises
    ImportError with fsspec's words (the package to install)."""
    text = os.fspath(location)
    if is_url(text):
        from fsspec.core import url_to_fs

        with reaching(text):
            fs, path = url_to_fs(text)
            # fsspec keeps one file system per URL kind and caches its listings, but what is
            # listed here is written by other processes (the batch's workers): a listing made
            # before they wrote (the incremental check) must not hide their partitions
            fs.invalidate_cache()
        return Place(fs, path.rstrip("/") or path)
    from fsspec.implementations.local import LocalFileSystem

    return Place(LocalFileSystem(), os.path.abspath(text.removeprefix("file://")))


class StoreError(OSError):
    """An object store that could not be reached or refused a request (its backend's own
    exception, which can be anything from botocore's to aiohttp's, named in the message)."""


@contextlib.contextmanager
def reaching(location: str | os.PathLike[str]) -> Iterator[None]:
    """Turn whatever a store's backend raises while working on ``location`` into a
    :class:`StoreError` naming it (an OSError, which the commands print as a message); local
    paths raise as they do."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        if not is_url(location):
            raise
        raise StoreError(f"{os.fspath(location)}: {type(exc).__name__}: {exc}") from exc

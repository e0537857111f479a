"""Shared test helpers, kept tiny and generic.

``require_tool(name)`` skips a test when an external tool is missing, except under CI
(``CI=true``), where a missing tool is a failure. ``shared_dir()`` is ``../shared`` beside the
project root (design notes, public captures); tests fail with a clear message if it is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def require_tool(name: str) -> str:
    """The path of tool ``name``; skips (or fails when ``CI=true``) if it is not installed."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"required tool {name!r} is not installed (CI=true)")
        pytest.skip(f"{name} not installed")
    return path


def shared_dir(*parts: str) -> Path:
    """A path under ../shared; fails the test if the folder is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"missing {path}: the shared test material must sit beside the project root")
    return path

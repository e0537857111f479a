"""Test support: find the real external tools and the shared captures, or fail clearly.

Lives in the package (not in a conftest) so every test folder can import it the same way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["IN_CI", "PROJECT_ROOT", "SHARED_CAPTURES", "require_tool", "shared_captures"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_CAPTURES = PROJECT_ROOT.parent / "shared" / "captures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of an external program a test needs.

    Missing: the test is skipped on a developer's machine, but fails under CI=true, where every
    real component (tshark, tcpdump, mosquitto) must have been installed by the test command.
    """
    import pytest

    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)
    if path is None:
        message = f"{name} is not installed (make test installs it with apt-get as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def shared_captures() -> Path:
    """``../shared/captures`` beside the project root, or a clear test failure."""
    import pytest

    if not SHARED_CAPTURES.is_dir():
        pytest.fail(f"the shared captures folder {SHARED_CAPTURES} is missing: tests read the "
                    "public MQTT captures from ../shared/captures beside the project root")
    return SHARED_CAPTURES

"""capture/ is the pure layer: no module there starts a process or imports a driver.

Issue 10: the tshark subprocess lived in ``capture/tshark.py`` and ``capture/decoder.py``
imported it back (an import cycle). Read the imports from the source, so a lazy import inside a
function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qosinspect.capture
from qosinspect.drivers import ENGINES, iter_capture_events
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURE_DIR = Path(qosinspect.capture.__file__).parent
#: What only drivers may use (processes, sockets, event loops) and the drivers themselves.
FORBIDDEN = ("subprocess", "asyncio", "qosinspect.drivers", "qosinspect.analysis")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against qosinspect/capture
                parts = ["qosinspect", "capture"][: 3 - node.level]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
    return names


@pytest.mark.parametrize("path", sorted(CAPTURE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_capture_modules_import_no_driver_and_no_process(path: Path) -> None:
    bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_tshark_driver_is_outside_capture() -> None:
    assert not (CAPTURE_DIR / "tshark.py").exists()
    assert (PROJECT_ROOT / "qosinspect" / "drivers" / "tshark.py").exists()


def test_unknown_engine_is_a_clear_error() -> None:
    assert ENGINES == ("native", "tshark")
    with pytest.raises(ValueError, match="native, tshark"):
        iter_capture_events(PROJECT_ROOT / "captures" / "gen-qos1.pcap", engine="scapy")

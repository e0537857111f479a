"""The switch between the C accelerator and the pure-Python path.

QOSINSPECT_PURE=1 keeps the extension from being used in a whole process; ``_accel.pure()``
builds pure objects inside one process (what the differential tests use); benchmarks print
``_accel.implementation()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qosinspect import _accel
from qosinspect.capture.lines import formatter
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.pipeline import CapturePipeline
from qosinspect.mqtt import StreamDecoder
from qosinspect.testing.tools import PROJECT_ROOT

from ._both import require_speedups

PROBE = """
import json
from qosinspect import _accel
from qosinspect.mqtt import StreamDecoder
print(json.dumps({"impl": _accel.implementation(),
                  "feed": StreamDecoder(4)._accel is not None}))
"""


def probe(env_value: str | None) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("QOSINSPECT_PURE", None)
    if env_value is not None:
        env["QOSINSPECT_PURE"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, cwd=PROJECT_ROOT, timeout=60)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_environment_switch_forces_the_pure_path() -> None:
    assert probe("1") == {"impl": "python", "feed": False}


def test_the_accelerator_is_used_by_default_when_built() -> None:
    require_speedups()
    assert probe(None) == {"impl": "c", "feed": True}
    assert probe("0") == {"impl": "c", "feed": True}


def test_pure_block_builds_pure_objects_in_this_process() -> None:
    require_speedups()
    capture = CaptureFile.from_bytes((PROJECT_ROOT / "captures" / "gen-qos1.pcap").read_bytes())
    with _accel.pure():
        assert _accel.implementation() == "python"
        assert StreamDecoder(4)._accel is None
        assert CapturePipeline(capture)._accel is False
        assert formatter("jsonl")._accel is None
    assert _accel.implementation() == "c"
    assert StreamDecoder(4)._accel is not None
    assert CapturePipeline(capture)._accel is True
    assert formatter("jsonl")._accel is not None

"""The C accelerator is built against the stable ABI (abi3), and what that changed holds.

* The module is ``_speedups.abi3.so`` (setup.py: ``Py_LIMITED_API``, ``py_limited_api``), so one
  build serves every CPython from 3.11 on; a version-specific build left beside it would be
  imported instead and is caught here.
* CaptureEngine is a heap type (PyType_FromSpec), as immutable and final as the static type was.
* The offsets of the Python classes' __slots__ are found by a probe (module.c slot_offset), not
  read from the member descriptor: a class that is not laid out as the C code expects is a loud
  TypeError at configure time, and a configure call that fails changes nothing (before, the
  offsets found before the failing name were kept, and the engine then read the wrong words of
  every half-stream). Run in a subprocess: configuring the module changes it for the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qosinspect import _accel
from qosinspect.testing.tools import PROJECT_ROOT

from ._both import require_speedups

HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE

CONFIGURE = """
import json, sys
from qosinspect import _accel
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.pcapfile import CaptureFile, Interface
from qosinspect.capture.reassembly import Flow, HalfStream
from qosinspect.capture.records import StreamData

# HalfStream's slots and those of its base (the TCP analysis state)
NAMES = [n for c in HalfStream.__mro__ for n in getattr(c, "__slots__", ())
         if n != "data_bytes"]


class Shifted:
    # HalfStream's slots each a word or two further on, and data_bytes (the last name the
    # engine looks up) a plain class attribute
    __slots__ = ("a0", "a1", *NAMES)
    data_bytes = 0


class Foreign:
    # a member descriptor of another class
    __slots__ = tuple(NAMES)
    data_bytes = Flow.last_ts


class TypeMember:
    # a member descriptor that is not an object slot (type.__basicsize__)
    __slots__ = tuple(NAMES)
    data_bytes = type.__dict__["__basicsize__"]


class Missing:
    __slots__ = tuple(NAMES)


errors = {}
for bad in (Shifted, Foreign, TypeMember, Missing):
    try:
        _accel.speedups.configure_capture(bad, Flow, StreamData, Interface)
        errors[bad.__name__] = None
    except Exception as exc:
        errors[bad.__name__] = type(exc).__name__

data = open(sys.argv[1], "rb").read()
ports = [int(p) for p in sys.argv[2:]]


def decode(accelerated):
    if accelerated:
        dec = CaptureDecoder(CaptureFile.from_bytes(data), ports=ports)
    else:
        with _accel.pure():
            dec = CaptureDecoder(CaptureFile.from_bytes(data), ports=ports)
    return list(dec), dec


fast, dec = decode(True)
pure, _ = decode(False)
print(json.dumps({"errors": errors, "same": fast == pure, "fused": dec.pipeline.fused_packets,
                  "mqtt": dec.summary.mqtt_packets}))
"""


def test_the_extension_is_built_for_the_stable_abi() -> None:
    require_speedups()
    assert _accel.speedups is not None
    assert Path(str(_accel.speedups.__file__)).name == "_speedups.abi3.so"


def test_capture_engine_is_an_immutable_final_heap_type() -> None:
    require_speedups()
    assert _accel.speedups is not None
    engine = _accel.speedups.CaptureEngine
    assert engine.__flags__ & HEAPTYPE
    assert engine.__module__ == "qosinspect._speedups"
    with pytest.raises(TypeError):
        engine.close = None  # type: ignore[method-assign]
    with pytest.raises(TypeError):
        type("Sub", (engine,), {})


def test_slot_layout_is_verified_and_a_failed_configure_changes_nothing() -> None:
    require_speedups()
    capture = PROJECT_ROOT / "captures" / "gen-qos1.pcap"
    out = subprocess.run([sys.executable, "-c", CONFIGURE, str(capture), "1883"],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["errors"] == {"Shifted": "TypeError", "Foreign": "TypeError",
                                "TypeMember": "TypeError", "Missing": "AttributeError"}
    assert result["same"]
    # the engine still takes the frames itself, through the offsets of the real classes
    assert result["fused"] > result["mqtt"] // 2 > 0

"""Fuzzing: mutated and truncated versions of every capture decode without any exception
leaving the library but CaptureError, and without hanging (the work per input is bounded: the
number of events is checked against the input size, and pytest-timeout guards the rest).

Mutations, per example: up to 24 random byte changes (anywhere: file header, record headers,
link/IP/TCP headers, MQTT bytes), optionally a chunk of the file duplicated somewhere else, and
optionally truncation at a random offset. Every capture of ../shared/captures and captures/ is
a seed. The same mutations run through the pcapng reader by rewriting each seed as pcapng.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.errors import CaptureError
from qosinspect.events import MqttPacketEvent
from qosinspect.testing.synthcap import PcapngInterface, SynthFrame, pcapng_bytes
from qosinspect.testing.tools import PROJECT_ROOT, SHARED_CAPTURES

SEEDS = sorted(SHARED_CAPTURES.glob("*.pcap")) + sorted((PROJECT_ROOT / "captures").glob("*.pcap"))
#: Every broker port of the shipped captures (their TLS ones too: encrypted streams are seeds).
PORTS = sorted({1883} | {p for c in json.loads((PROJECT_ROOT / "captures" / "captures.json")
                                                .read_text()) for p in c["ports"]})
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

mutations = st.fixed_dictionaries({
    "flips": st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      max_size=24),
    "splice": st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 400)),
    "cut": st.none() | st.floats(0, 1),
})


def mutate(data: bytes, m: dict[str, object]) -> bytes:
    buf = bytearray(data)
    for where, value in m["flips"]:  # type: ignore[attr-defined]
        buf[int(where * len(buf))] = value
    if m["splice"] is not None:
        src, dst, size = m["splice"]  # type: ignore[misc]
        a = int(src * len(buf))
        chunk = buf[a:a + size]
        b = int(dst * len(buf))
        buf[b:b] = chunk
    if m["cut"] is not None:
        del buf[int(m["cut"] * len(buf)):]  # type: ignore[call-overload]
    return bytes(buf)


def decode_all(data: bytes) -> int:
    """Decode fully; only CaptureError may come out. Returns the number of events."""
    n = 0
    try:
        cap = CaptureFile.from_bytes(data)
    except CaptureError:
        return 0
    try:
        for ev in iter_events(cap, ports=PORTS, mqtt_version=5):
            n += 1
            if type(ev) is MqttPacketEvent:
                assert ev.frame >= ev.first_frame >= 1
    except CaptureError as exc:
        assert str(exc)
    # bounded work: a frame yields a few records, a byte at most one MQTT packet
    assert n <= 4 * len(data) + 100
    return n


def as_pcapng(path: Path) -> bytes:
    """The same frames written as pcapng (one interface, nanosecond stamps)."""
    with CaptureFile(path) as cap:
        raw = list(cap.frames())
    frames = [SynthFrame(f.ts_ns, f.data, f.orig_len) for f in raw]
    return pcapng_bytes(frames, [PcapngInterface(raw[0].linktype, tsresol=9)])


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
@SETTINGS
@given(m=mutations)
def test_mutated_pcap(path: Path, m: dict[str, object]) -> None:
    decode_all(mutate(path.read_bytes(), m))


@pytest.mark.slow
@pytest.mark.parametrize("path", SEEDS[::4], ids=lambda p: p.name)
@SETTINGS
@given(m=mutations)
def test_mutated_pcapng(path: Path, m: dict[str, object]) -> None:
    decode_all(mutate(as_pcapng(path), m))


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_every_truncation_point_of_the_first_kilobytes(path: Path) -> None:
    data = path.read_bytes()
    whole = decode_all(data)
    assert whole > 0
    for cut in range(0, min(len(data), 1500), 7):
        decode_all(data[:cut])

"""Reference counts stay balanced through the C paths (no leak, no premature free).

The shared objects the C code hands out or borrows (NO_PROPERTIES, the Success reasons, the
PINGREQ/PINGRESP singletons, cached topic strings, the directions, connection descriptions)
must have the same reference count after the packets and events holding them are gone; and
repeating a whole decode must not grow memory.
"""

from __future__ import annotations

import gc
import io
import sys
import tracemalloc
from typing import Any

import pytest

from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.lines import formatter
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.stream import StreamCapture
from qosinspect.mqtt import Direction, PingReq, PubAck, Publish, StreamDecoder, encode
from qosinspect.mqtt.codec import _PINGREQ
from qosinspect.mqtt.enums import PubAckReason, PubCompReason, PubRecReason, PubRelReason
from qosinspect.mqtt.properties import NO_PROPERTIES
from qosinspect.testing.tools import PROJECT_ROOT

from ._both import require_speedups

SHARED: list[Any] = [NO_PROPERTIES, _PINGREQ, PubAckReason.SUCCESS, PubRecReason.SUCCESS,
                     PubRelReason.SUCCESS, PubCompReason.SUCCESS, Direction.C2B, Direction.B2C,
                     None, True, False]


def counts(objs: list[Any]) -> list[int]:
    gc.collect()
    return [sys.getrefcount(o) for o in objs]


def test_stream_feed_balances_references() -> None:
    require_speedups()
    dec = StreamDecoder(4, lenient=True)
    stream = b"".join(encode(p, 4) for p in [
        Publish("a/b", b"x" * 30, 1, False, False, 1), PubAck(1), PingReq(),
        Publish("a/b", b"y", 0)] * 50)
    assert len(dec.feed(stream)) == 200  # the topic is now cached
    # (no assert here: pytest's rewritten assert leaves a None in the frame, which the
    # reference counts below would see change)
    topic = next(iter((dec._topics or {}).values()))
    objs = [*SHARED, topic]

    def feed_many() -> list[int]:
        for _ in range(20):
            out = dec.feed(stream)
            assert len(out) == 200
            del out
        dec.sizes = []
        return counts(objs)

    # a constant difference may come from the interpreter; one per packet would be a leak
    assert feed_many() == feed_many()


@pytest.mark.parametrize("source", ["file", "stream"])
def test_capture_engine_and_jsonl_balance_references(source: str) -> None:
    """A file, and a stream read in pieces that cut records (the engine resumed piece after
    piece, every frame handed to ``on_frame``)."""
    require_speedups()
    data = (PROJECT_ROOT / "captures" / "gen-qos2.pcap").read_bytes()
    frames: list[int] = []

    def run() -> int:
        cap: CaptureFile
        if source == "file":
            cap = CaptureFile.from_bytes(data)
        else:
            frames.clear()
            cap = StreamCapture(io.BytesIO(data), read_size=333,
                                on_frame=lambda n, *_: frames.append(n))
        dec = CaptureDecoder(cap)
        out = io.StringIO()
        n = formatter("jsonl").write_all(iter(dec), out.write)
        assert dec.pipeline.fused_packets > 0
        return n

    run()
    run()
    before = counts(SHARED)
    tracemalloc.start()
    try:
        run()
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(15):
            run()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert counts(SHARED) == before
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 15 decodes"
    if source == "stream":
        assert frames == list(range(1, len(frames) + 1)) and len(frames) > 100

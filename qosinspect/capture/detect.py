"""Is this stream MQTT? The run heuristic for streams whose start was not captured.

Why: a stream on a port MQTT is not expected on is decoded when its client's first bytes are a
CONNECT (:func:`qosinspect.capture.pipeline.looks_like_connect`). A capture that starts after the
CONNECT has no such bytes, and four MQTT streams on port 17501 came out as nothing, silently.
Wireshark does not find them either (its MQTT heuristic is off by default). We accept a stream
whose handshake was *not* captured when one direction carries a run of :data:`RUN_PACKETS`
consecutive complete MQTT packets that decode strictly (MQTT 3.1.1 or 5.0 rules: packet type
1-15, the fixed-header flags each type requires, a valid remaining length, a body that parses).

The run must begin at a segment boundary among the first :data:`MAX_STARTS` segments of that
direction (a mid-stream capture may begin inside a packet; the next segment often begins a new
one), within the first :data:`PROBE_LIMIT` bytes.

Guards against false positives, and why:

* A stream whose SYN was captured never goes through this: its client must start with a
  CONNECT (or an MQTT WebSocket upgrade).
* Python MQTT clients (paho-mqtt) wake their network thread through a TCP socket pair on
  127.0.0.1 and write one byte ``b"0"`` (0x30, a PUBLISH header) per wake-up. ``0x30 0x30``
  reads as a PUBLISH of remaining length 48 whose topic length (0x3030) is longer than the
  packet: it never decodes, so a loopback capture's wake-up streams are not taken for MQTT
  (``tests/capture/test_detect.py`` shows it on a real paho client captured by tcpdump).
* Four packets: a random byte stream passes one packet's checks now and then (a 2-byte
  PINGREQ ``c0 00``), four in a row with the lengths chaining exactly practically never.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import MQTTError
from ..mqtt.codec import decode_body
from .version import packet_spans

__all__ = ["MAX_STARTS", "PROBE_LIMIT", "RUN_PACKETS", "mqtt_run"]

#: Consecutive well-formed MQTT packets that make a mid-stream stream MQTT.
RUN_PACKETS = 4
#: Segment boundaries tried as the start of the run, per direction.
MAX_STARTS = 4
#: Bytes of a direction looked at before the stream is given up as not MQTT.
PROBE_LIMIT = 16384


def _packet_ok(buf: bytes, first: int, start: int, end: int) -> bool:
    if not 0x10 <= first < 0x100:
        return False  # type 0 is reserved
    for version in (4, 5):
        try:
            decode_body(buf, first, start, end, version)
        except MQTTError:
            continue
        return True
    return False


def _run_from(buf: bytes, pos: int) -> bool | None:
    """True: :data:`RUN_PACKETS` good packets from ``pos``; False: a bad one first; None: the
    bytes end before the run is complete."""
    spans, invalid = packet_spans(buf, pos, RUN_PACKETS)
    if not all(_packet_ok(buf, first, start, end) for first, start, end in spans):
        return False
    if len(spans) == RUN_PACKETS:
        return True
    return False if invalid else None


def mqtt_run(buf: bytes, starts: Sequence[int]) -> bool | None:
    """Does ``buf`` (one direction's first bytes; ``starts`` the offsets where its captured
    segments began) hold a run of MQTT packets? ``None``: not yet known (more bytes may
    decide); False: no start can lead to one."""
    undecided = False
    for s in starts[:MAX_STARTS]:
        verdict = _run_from(buf, s)
        if verdict:
            return True
        if verdict is None:
            undecided = True
    if undecided or len(starts) < MAX_STARTS:
        return None if len(buf) < PROBE_LIMIT else False
    return False

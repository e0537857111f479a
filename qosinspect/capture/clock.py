"""The capture's clock: time 0, jumps, and timestamps no analysis can hold.

Rules, and why:

* **Time 0 is the file's first frame**, whatever it carries, as in Wireshark's "seconds since
  the beginning of capture". The first MQTT packet can come seconds later (the capture started
  before the clients); counting from it shifts every time a user compares with Wireshark.
* **A clock jump is said, with its frame.** A timestamp more than :data:`BACK_TOLERANCE_NS`
  (one second) earlier than the frame before it, or more than :data:`JUMP_GAP_NS` (one day)
  after it, is a ``clock_jump`` note: merged captures, an NTP step or a machine suspended
  mid-capture. Smaller steps back are normal (captures on several CPUs or interfaces interleave
  frames a few microseconds out of order) and not noted. The frame keeps its time (it is what
  the file says); spans and rates computed across the jump are then suspect, and the note names
  where.
* **A timestamp outside the sane range is clamped, and said.** The range is
  [0, :data:`TS_LIMIT`) nanoseconds since the epoch (1970 to 2116). A mutated pcapng
  ``if_tsresol`` or ``if_tsoffset`` can put a frame beyond the 64-bit nanosecond range, where
  pandas, the C accelerator and ``struct`` all fail; the limit keeps 2**62 ns of headroom, so
  a timestamp plus any window or timeout of the analysis still fits in 64 bits. Such a frame
  gets the previous frame's time (0 for the first frame) and a ``timestamp_out_of_range``
  note; it is decoded like any other.

The capture reader (:mod:`.pcapfile`) calls :func:`check_clock` only on the frames that may need
it (the first, one earlier than the one before, one more than a day later, one out of range),
so the hot loop pays one comparison; the C walker hands the walk to the Python reader at such a
frame (``odd_time`` in ``_csrc/walk.c`` mirrors when, not what).
"""

from __future__ import annotations

from ..anomalies import AnomalyKind
from .records import Notice

__all__ = ["BACK_TOLERANCE_NS", "JUMP_GAP_NS", "TS_LIMIT", "check_clock"]

#: A forward step longer than this between consecutive frames is a clock jump (one day).
JUMP_GAP_NS = 86_400 * 10**9
#: A step back longer than this is a clock jump (one second).
BACK_TOLERANCE_NS = 10**9
#: Timestamps must be in ``[0, TS_LIMIT)`` ns since the epoch (up to the year 2116).
TS_LIMIT = 1 << 62


def _fmt(ns: int) -> str:
    return f"{ns / 1e9:.6f} s"


def check_clock(frame: int, ts: int, prev: int | None) -> tuple[int, Notice | None]:
    """The timestamp to use for ``frame`` (stamped ``ts``; ``prev`` is the previous frame's,
    ``None`` for the first) and the note to report, if any."""
    if not 0 <= ts < TS_LIMIT:
        use = prev if prev is not None else 0
        return use, Notice(None, None, frame, use, AnomalyKind.TIMESTAMP_OUT_OF_RANGE,
                           f"frame {frame}: timestamp {ts} ns is outside 1970..2116 (beyond "
                           f"what 64-bit nanoseconds hold with headroom); the frame is kept "
                           f"with the previous frame's time, {use} ns")
    if prev is None:
        return ts, None
    if prev - ts > BACK_TOLERANCE_NS:
        return ts, Notice(None, None, frame, ts, AnomalyKind.CLOCK_JUMP,
                          f"frame {frame}: the clock goes back {_fmt(prev - ts)} (from {prev} "
                          f"to {ts} ns); times and spans across frame {frame} are suspect")
    if ts - prev > JUMP_GAP_NS:
        return ts, Notice(None, None, frame, ts, AnomalyKind.CLOCK_JUMP,
                          f"frame {frame}: the clock jumps {_fmt(ts - prev)} forward "
                          f"(more than a day after frame {frame - 1}); spans and rates "
                          f"across frame {frame} are suspect")
    return ts, None

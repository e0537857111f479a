"""The flight recorder of ``watch --record-dir DIR``: a pcapng of the packets around each
reconnection, anomaly and stall, to open in Wireshark or give to ``qosinspect report``.

Rules, and why:

* **A ring of raw frames in packet time.** Every frame read (:class:`~qosinspect.capture.stream.
  StreamCapture`'s ``on_frame``) goes into a ring that keeps ``3 * seconds + after_s + 2`` s of
  packet time behind the analysis (and at most ``max_mb``): enough to still hold ``seconds``
  before an event said a while after it began (a reconnection is said a second after the new
  CONNECT, and its window starts before the old connection dropped; a gap longer than about
  ``seconds`` makes its window start later).
* **The window.** ``seconds`` before the event's start (a reconnection: when the old connection
  ended; a stall: its PUBLISH; an anomaly: its packet) to ``after_s`` after its end; the file is
  written once packet time passes the end, or when the run ends.
* **Named after the event**: ``<UTC time>-<type>-<client or kind>.pcapng``; a ``recorded``
  JSON object says where it went.
* **Disk capped** (``max_mb``): after each file, the oldest files this recorder wrote are
  removed until the total fits, each said (``record_removed``). Nothing it did not write is
  touched.
* **Who the clients are.** A window of a few seconds rarely holds the CONNECT of a connection
  that has run for minutes, and without it a report cannot tell whose connection it was (nor
  match a reconnection). So the frames that carried each connection's CONNECT and CONNACK are
  kept aside (:meth:`FlightRecorder.event`) while the connection is open or within the ring's
  reach, and every file starts with those of the connections still open at its start: the
  report then names the clients, with a stream gap (said as such) between the handshake and
  the window.
* Frames keep their timestamps (nanoseconds) and link types (one interface per link type), so
  the file reads back exactly as the frames were captured.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..capture.writer import pcapng_epb, pcapng_idb, pcapng_option, pcapng_shb
from ..events import ConnectionClosed, Event, MqttPacketEvent
from ..mqtt.packets import ConnAck, Connect
from ..report.output import format_time

__all__ = ["FlightRecorder"]

_S = 1_000_000_000
_TRIGGERS = ("reconnection", "anomaly", "stall")
#: A frame in the ring: (ts_ns, linktype, data, orig_len, frame_no).
_Frame = tuple[int, int, bytes, int, int]


@dataclass
class _Pending:
    start_ns: int
    end_ns: int
    name: str
    trigger: dict[str, Any]


class FlightRecorder:
    """Feed it every frame (:meth:`frame`) and every JSON object of the run (:meth:`update`);
    it writes the windows to ``directory`` and says so through ``emit``. :meth:`close` writes
    what is still pending."""

    def __init__(self, directory: str | Path, emit: Callable[[dict[str, Any]], None], *,
                 seconds: float = 30.0, after_s: float | None = None,
                 max_mb: float = 100.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.emit = emit
        self.before_ns = int(seconds * _S)
        # after the event: ``after_s``, by default as long as before but at most 5 s
        self.after_ns = int((min(seconds, 5.0) if after_s is None else after_s) * _S)
        # a reconnection is said a second after its new CONNECT and its window starts
        # ``seconds`` before the old connection dropped: room for a gap as long as the window
        self.keep_ns = 3 * self.before_ns + self.after_ns + 2 * _S
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._ring: deque[_Frame] = deque()
        self._by_no: dict[int, _Frame] = {}
        self._ring_bytes = 0
        #: conn_id -> (its CONNECT/CONNACK frames, when it closed or None).
        self._pinned: dict[int, tuple[list[_Frame], int | None]] = {}
        self._pending: list[_Pending] = []
        self._written: deque[Path] = deque()
        self._last_ts = 0

    # -- input --------------------------------------------------------------------------------

    def frame(self, frame_no: int, ts_ns: int, linktype: int, data: bytes, orig_len: int) -> None:
        ring = self._ring
        f = (ts_ns, linktype, data, orig_len, frame_no)
        ring.append(f)
        self._by_no[frame_no] = f
        self._ring_bytes += len(data) + 64
        # the horizon follows the *events* (the analysis may lag the frames by one read: a
        # CONNECT's frames must still be here when its event comes)
        horizon = self._last_ts - self.keep_ns
        if ring[0][0] < horizon or self._ring_bytes > self.max_bytes:
            while ring and (ring[0][0] < horizon or self._ring_bytes > self.max_bytes):
                old = ring.popleft()
                del self._by_no[old[4]]
                self._ring_bytes -= len(old[2]) + 64
            for conn_id, (_, closed) in list(self._pinned.items()):
                if closed is not None and closed < horizon:
                    del self._pinned[conn_id]

    def event(self, ev: Event) -> None:
        """Every event of the run: CONNECT and CONNACK frames are kept aside per connection,
        until it closed longer ago than the ring reaches; the events' time moves the ring on
        and ends the windows."""
        ts = ev.ts_ns
        if ts > self._last_ts:
            self._last_ts = ts
            if self._pending and self._pending[0].end_ns < ts:
                self._flush(ts)
        if type(ev) is MqttPacketEvent:
            if type(ev.packet) is Connect or type(ev.packet) is ConnAck:
                frames = self._pinned.setdefault(ev.conn.conn_id, ([], None))[0]
                for no in dict.fromkeys((ev.first_frame, ev.frame)):
                    f = self._by_no.get(no)
                    if f is not None and f not in frames:
                        frames.append(f)
        elif type(ev) is ConnectionClosed and ev.conn.conn_id in self._pinned:
            self._pinned[ev.conn.conn_id] = (self._pinned[ev.conn.conn_id][0], ev.ts_ns)

    def update(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind not in _TRIGGERS:
            return
        end = int(item["ts_ns"])
        if kind == "reconnection":
            start = item.get("t_drop_ns") or end
            what = item.get("client_id") or item.get("session") or "session"
        elif kind == "stall":
            start = int(item.get("t_publish_ns") or end)
            what = f"{item.get('client_id') or item.get('session')}-qos{item['qos']}-id" \
                   f"{item['packet_id']}"
        else:
            start = end
            what = str(item.get("kind"))
        name = f"{format_time(end).replace(':', '').replace('-', '')}-{kind}-{what}"
        self._pending.append(_Pending(start - self.before_ns, end + self.after_ns,
                                      _safe(name), item))
        self._pending.sort(key=lambda p: p.end_ns)

    def close(self) -> None:
        """The run ended: write every window still pending with what there is."""
        self._flush(None)

    # -- output -------------------------------------------------------------------------------

    def _flush(self, now_ns: int | None) -> None:
        while self._pending and (now_ns is None or self._pending[0].end_ns < now_ns):
            self._write(self._pending.pop(0))

    def _write(self, p: _Pending) -> None:
        frames = [f for f in self._ring if p.start_ns <= f[0] <= p.end_ns]
        # the handshakes of the connections open at the window's start, which it lacks
        seen = {f[4] for f in frames}
        early = [f for pinned, closed in self._pinned.values()
                 if closed is None or closed >= p.start_ns
                 for f in pinned if f[0] < p.start_ns and f[4] not in seen]
        frames = sorted(early, key=lambda f: f[4]) + frames
        path = self.dir / f"{p.name}.pcapng"
        k = 1
        while path.exists():
            k += 1
            path = self.dir / f"{p.name}-{k}.pcapng"
        ifaces: dict[int, int] = {}
        parts = [pcapng_shb(pcapng_option(4, b"qosinspect watch --record-dir")
                            + pcapng_option(1, f"around a {p.trigger['type']} at "
                                               f"{p.trigger['ts']}".encode()))]
        for ts, lt, data, orig, _ in frames:
            iface = ifaces.get(lt)
            if iface is None:
                iface = ifaces[lt] = len(ifaces)
                parts.append(pcapng_idb(lt, tsresol=9))
            parts.append(pcapng_epb(iface, ts, data, orig))
        path.write_bytes(b"".join(parts))
        self._written.append(path)
        self.emit({"type": "recorded", "ts": p.trigger["ts"], "ts_ns": p.trigger["ts_ns"],
                   "trigger": p.trigger["type"], "path": str(path), "frames": len(frames),
                   "handshake_frames": len(early),
                   "from": format_time(p.start_ns), "to": format_time(p.end_ns)})
        self._cap_disk()

    def _cap_disk(self) -> None:
        total = sum(f.stat().st_size for f in self._written if f.exists())
        while total > self.max_bytes and len(self._written) > 1:
            old = self._written.popleft()
            size = old.stat().st_size if old.exists() else 0
            old.unlink(missing_ok=True)
            total -= size
            self.emit({"type": "record_removed", "path": str(old),
                       "why": f"--record-max-mb {self.max_bytes / 1048576:g} reached"})


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:150]

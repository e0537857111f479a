"""The events of :mod:`qosinspect.capture.decoder`, from Wireshark's dissector (``tshark -T json``).

Why a second engine: it is the cross-check (an independent TCP reassembly and MQTT dissector),
and the way to read MQTT over TLS when a key log file is at hand (``tls_keylog``, passed as
``-o tls.keylog_file:FILE``).

How, and the rules that matter:

* **Several MQTT packets in one frame** share the ``mqtt`` key in tshark's JSON; with
  ``--no-duplicate-keys`` they become a list, one dict per packet, in wire order.
* **Ports.** tshark dissects MQTT on 1883 (and on 8883 under TLS). Other ``ports`` are added with
  ``-d tcp.port==N,mqtt``. With ``detect_any_port``, a first quick pass lists frames whose TCP
  payload starts with an MQTT CONNECT (checked with
  :func:`qosinspect.capture.pipeline.looks_like_connect`), and the broker ports found are
  added too; WebSocket upgrades offering ``mqtt`` add an ``http`` decode (tshark 4.0 does not
  pass WebSocket payloads to its MQTT dissector; later ones do).
* **Connections** are ``tcp.stream`` numbers (the same numbering as the native engine's
  ``conn_id``). Sides come from the SYN, else the port, else packets only one side sends, as in
  the native engine. Besides MQTT frames, the SYN/FIN/RST frames, frames tshark marks as TCP
  retransmissions and TLS ClientHellos are read, for the connection and retransmission events.
* **Packets are rebuilt from the dissected fields**, not from bytes, so the cross-check is
  independent. MQTT 5 properties are not rebuilt (tshark's JSON flattens them by value type), nor
  are passwords or will payloads. A packet tshark marks malformed (``_ws.malformed``: dissection
  stopped inside it, so it is the frame's last) becomes an ``Anomaly``, as in the native engine.
* **No TCP statistics**: ``ConnectionClosed.tcp`` is ``None`` (tshark's per-segment analysis is
  not a count of what reassembly did). Its ``tcp.analysis`` flags are the
  :class:`~qosinspect.events.TcpEvidence` events, on the connections this engine reports (their
  late segments after the close included), as the native engine's one pass gives them.
* **Frames and connections as the native engine counts them**: a connection with an end on a
  broker port counts from its first frame (an attempt refused by RST included), a closed one is
  not reopened by a late segment, and ``summary.frames`` is the file's frame count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ..anomalies import AnomalyKind
from ..capture.decoder import CaptureSummary
from ..capture.pcapfile import CaptureFile, capture_format, file_head
from ..capture.pipeline import looks_like_connect
from ..capture.tcp_analysis import KINDS as _KINDS
from ..errors import CaptureError
from ..events import (
    Anomaly,
    CaptureStarted,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    Event,
    MqttPacketEvent,
    TcpEvidence,
    TcpRetransmission,
)
from ..mqtt.enums import Direction, PacketType
from ..mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)

__all__ = ["TsharkDecoder", "tshark_command"]

_DEFAULT_VERSION = {3: "MQTT v3.1", 4: "MQTT v3.1.1", 5: "MQTT v5.0"}
_TCP_KINDS = frozenset(_KINDS)
_FROM_CLIENT = frozenset({1, 8, 10, 12})
_FROM_BROKER = frozenset({2, 9, 11, 13})
_EXTRA_FRAMES = ("tcp.flags.syn == 1 || tcp.flags.fin == 1 || tcp.flags.reset == 1 || "
                 "tcp.analysis.flags || tls.handshake.type == 1")
_PROBE_FILTER = ('(tcp.payload[0:1] == 10 && (tcp.payload contains "MQTT" || '
                 'tcp.payload contains "MQIsdp")) || (tcp.payload[0:4] == "GET " && '
                 'tcp.payload contains "mqtt")')


def tshark_command(path: str, *, ports: Iterable[int] = (), tls_keylog: str | None = None,
                   mqtt_version: int | None = None, http_ports: Iterable[int] = (),
                   tls_ports: Iterable[int] = (), display_filter: str = "mqtt",
                   tshark: str = "tshark") -> list[str]:
    """The tshark command line this engine runs: MQTT decoded on ``ports`` (over TCP) and on
    ``tls_ports`` (inside TLS, once decrypted with ``tls_keylog``)."""
    cmd = [tshark, "-n", "-r", path, "-T", "json", "--no-duplicate-keys", "-Y", display_filter]
    tls = set(tls_ports)
    for port in sorted(set(ports) - tls):
        if port != 1883:
            cmd += ["-d", f"tcp.port=={port},mqtt"]
    for port in sorted(tls):
        if port != 8883:
            cmd += ["-d", f"tls.port=={port},mqtt"]
    for port in sorted(set(http_ports)):
        cmd += ["-d", f"tcp.port=={port},http"]
    if tls_keylog:
        cmd += ["-o", f"tls.keylog_file:{tls_keylog}"]
    if mqtt_version is not None:
        cmd += ["-o", f"mqtt.default_version:{_DEFAULT_VERSION[mqtt_version]}"]
    return cmd


def _one(value: Any) -> Any:
    """A field tshark may repeat: its first value."""
    return value[0] if isinstance(value, list) else value


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _int(m: dict[str, Any], key: str, default: int = 0) -> int:
    v = _one(m.get(key))
    if v is None or v == "":
        return default
    return int(v, 0) if isinstance(v, str) and v.startswith("0x") else int(v)


def _hexbytes(value: Any) -> bytes:
    v = _one(value)
    if not v:
        return b""
    return bytes.fromhex(str(v).replace(":", ""))


def _ns(epoch: str) -> int:
    """``frame.time_epoch`` ("1585066902.429277000") as integer nanoseconds, exactly."""
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """The fields of one MQTT dict with the ``*_tree`` sub-dicts merged in."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v))
        else:
            out[k] = v
    return out


class _Stream:
    __slots__ = (
        "broker",
        "client",
        "closed_by",
        "conn_id",
        "fin",
        "first_done",
        "first_frame",
        "first_ts",
        "handshake",
        "has_mqtt",
        "info",
        "opened",
        "sides_known",
        "tls",
        "tls_said",
        "version",
        "version_known",
    )

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.client: Endpoint | None = None
        self.broker: Endpoint | None = None
        self.sides_known = False
        self.handshake = False
        self.first_frame = 0
        self.first_ts = 0
        self.info: ConnectionInfo | None = None
        self.opened = False
        self.tls = False
        #: The first TLS frame was seen (and, without a key log, said to be encrypted).
        self.tls_said = False
        self.version = 4
        self.version_known = False
        self.first_done = False
        self.fin: set[str] = set()
        self.closed_by: Direction | None = None
        self.has_mqtt = False

    def make_info(self) -> ConnectionInfo:
        assert self.client is not None and self.broker is not None
        self.info = ConnectionInfo(self.conn_id, self.client, self.broker,
                                   "tls" if self.tls else "tcp", self.sides_known)
        return self.info

    def direction(self, src: Endpoint) -> Direction:
        return Direction.C2B if src == self.client else Direction.B2C


class TsharkDecoder:
    """Iterate the events of a capture as tshark dissects it (see the module docstring)."""

    def __init__(self, source: str | os.PathLike[str], *, ports: Iterable[int] = (1883,),
                 tls_ports: Iterable[int] = (8883,), detect_any_port: bool = True,
                 mqtt_version: int = 4, tls_keylog: str | None = None,
                 tshark: str | None = None) -> None:
        if mqtt_version not in (3, 4, 5):
            raise ValueError(f"mqtt_version must be 3, 4 or 5, not {mqtt_version!r}")
        self.path = os.fspath(source)
        self.ports = frozenset(ports)
        self.tls_ports = frozenset(tls_ports)
        self.detect_any_port = detect_any_port
        self.mqtt_version = mqtt_version
        self.tls_keylog = tls_keylog
        self.tshark = tshark or shutil.which("tshark") or ""
        self.summary = CaptureSummary()
        self.command: list[str] = []
        self._tls_ports: set[int] = set(self.tls_ports)

    # -- running tshark ------------------------------------------------------------------------

    def _fail(self, message: str) -> CaptureError:
        return CaptureError(message, path=self.path)

    def _detect_ports(self, path: str) -> tuple[set[int], set[int], set[int]]:
        """From a quick first pass: broker ports of streams starting with a CONNECT, ports of
        MQTT WebSocket upgrades, and ports receiving a TLS ClientHello."""
        cmd = [self.tshark, "-n", "-r", path, "-T", "fields", "-e", "tcp.dstport", "-e",
               "tcp.payload", "-e", "tls.handshake.type", "-Y",
               f"({_PROBE_FILTER}) || tls.handshake.type == 1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        mqtt: set[int] = set()
        http: set[int] = set()
        tls: set[int] = set()
        for line in proc.stdout.splitlines():
            port_s, _, rest = line.partition("\t")
            payload, _, handshake = rest.partition("\t")
            if not port_s.isdigit():
                continue
            if "1" in handshake.split(","):
                tls.add(int(port_s))
                continue
            data = bytes.fromhex(payload.split(",")[0].replace(":", ""))
            if data.startswith(b"GET "):
                http.add(int(port_s))
            elif looks_like_connect(data):
                mqtt.add(int(port_s))
        return mqtt, http, tls

    def __iter__(self) -> Iterator[Event]:
        if not self.tshark or shutil.which(self.tshark) is None:
            raise self._fail("the tshark engine needs tshark (Wireshark's command line) "
                             "installed; use --engine native")
        spool: IO[bytes] | None = None
        path = self.path
        try:
            if path == "-":
                spool = tempfile.NamedTemporaryFile(suffix=".pcap")  # noqa: SIM115
                shutil.copyfileobj(sys.stdin.buffer, spool)
                spool.flush()
                path = spool.name
            elif not os.path.exists(path):
                raise self._fail("no such file")
            self._check_format(path)
            ports = set(self.ports)
            found, http, tls = self._detect_ports(path)
            # a port given for MQTT that carries TLS is MQTT inside TLS; other TLS ports are
            # not MQTT unless given (as with the native engine)
            tls_ports = (tls & ports) | set(self.tls_ports)
            if self.detect_any_port:
                ports |= found
            else:
                http = set()
            self.command = tshark_command(path, ports=ports - tls_ports,
                                          tls_keylog=self.tls_keylog,
                                          mqtt_version=self.mqtt_version, http_ports=http,
                                          tls_ports=tls_ports,
                                          display_filter=f"mqtt || {_EXTRA_FRAMES}",
                                          tshark=self.tshark)
            self._tls_ports = tls_ports
            first = self._first_frame(path)
            if first is not None:
                yield first
            yield from self._run(self.command, ports | tls_ports)
        finally:
            if spool is not None:
                spool.close()

    def _check_format(self, path: str) -> None:
        """The native engine's check of the file's first bytes: tshark takes an empty file, or
        a gzip of something else, for an empty capture and exits 0."""
        try:
            head = file_head(path)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._fail(f"cannot read: {exc}") from None
        capture_format(head, self.path)

    def _run(self, cmd: list[str], broker_ports: set[int]) -> Iterator[Event]:
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf)
            assert proc.stdout is not None
            try:
                yield from self._events(_packets(proc.stdout), broker_ports)
            finally:
                proc.stdout.close()
                if proc.poll() is None:
                    proc.kill()
                rc = proc.wait()
            errf.seek(0)
            err = errf.read().decode("utf-8", "replace")
        problems = [ln.strip().removeprefix("tshark: ") for ln in err.splitlines()
                    if ln.strip() and "Running as user" not in ln and "dangerous" not in ln]
        if rc != 0 or any("cut short" in ln or "appears to be damaged" in ln
                          or "isn't a capture file" in ln for ln in problems):
            detail = " ".join(problems).strip() or f"tshark exited with status {rc}"
            raise self._fail(f"tshark: {detail}")

    # -- frames to events ------------------------------------------------------------------------

    def _events(self, frames: Iterator[dict[str, Any]], broker_ports: set[int]
                ) -> Iterator[Event]:
        streams: dict[int, _Stream] = {}
        #: closed streams: were they connections (their late segments' flags count)?
        ended: dict[int, bool] = {}
        summary = self.summary
        last_frame = 0
        last_ts = 0
        for layers in frames:
            fr = layers.get("frame", {})
            frame = int(fr.get("frame.number", 0))
            ts = _ns(fr.get("frame.time_epoch", "0"))
            last_frame, last_ts = frame, ts
            tcp = layers.get("tcp")
            if isinstance(tcp, list):
                tcp = tcp[-1]
            if not isinstance(tcp, dict):
                continue
            ip = layers.get("ip") or layers.get("ipv6")
            if isinstance(ip, list):
                ip = ip[-1]
            if not isinstance(ip, dict):
                continue
            src = Endpoint(str(ip.get("ip.src") or ip.get("ipv6.src")),
                           int(tcp["tcp.srcport"]))
            dst = Endpoint(str(ip.get("ip.dst") or ip.get("ipv6.dst")),
                           int(tcp["tcp.dstport"]))
            sid = int(tcp.get("tcp.stream", -1))
            flagged = _analysis_flags(tcp)
            if sid in ended:
                # a late segment of a closed connection does not reopen it; its flags count
                if ended[sid]:
                    yield from _evidence(ts, frame, sid, src, dst, flagged)
                continue
            flags = int(str(tcp.get("tcp.flags", "0")), 16)
            st = streams.get(sid)
            if st is None:
                st = streams[sid] = _Stream(sid)
                st.version = self.mqtt_version  # until a CONNECT says otherwise
                st.first_frame, st.first_ts = frame, ts
                self._sides(st, src, dst, flags, broker_ports)
                if src.port in broker_ports or dst.port in broker_ports or st.tls:
                    # a connection to a broker port counts from its first frame, as in the
                    # native engine (an attempt refused by RST included)
                    yield from self._open(st, frame, ts)
            mqtt = layers.get("mqtt")
            if "tls" in layers and st.tls and not st.tls_said:
                st.tls_said = True
                if not st.opened:
                    yield from self._open(st, frame, ts)
                if not self.tls_keylog:
                    summary.anomalies += 1
                    yield Anomaly(ts, st.info, st.direction(src) if st.sides_known else None,
                                  AnomalyKind.ENCRYPTED, "TLS handshake: MQTT over TLS cannot be "
                                  "decoded without a key log (--tls-keylog)", frame)
            if mqtt:
                if not st.opened:
                    yield from self._open(st, frame, ts)
                yield from self._mqtt(st, layers, _many(mqtt), src, frame, ts)
            elif st.opened and "retransmission" in flagged:
                yield TcpRetransmission(ts, st.make_info() if st.info is None else st.info,
                                        st.direction(src) if st.sides_known else None,
                                        int(tcp.get("tcp.len", 0)), frame)
            if st.opened:
                yield from _evidence(ts, frame, sid, src, dst, flagged)
            if flags & 0x05:
                d = st.direction(src)
                if st.closed_by is None and st.sides_known:
                    st.closed_by = d
                if flags & 0x04 or len(st.fin | {d.value}) == 2:
                    del streams[sid]
                    ended[sid] = st.opened
                    if st.opened:
                        yield from self._close(st, "rst" if flags & 0x04 else "fin", frame, ts)
                else:
                    st.fin.add(d.value)
        summary.frames = max(last_frame, self._frame_count())
        for st in sorted(streams.values(), key=lambda s: s.conn_id):
            if st.opened:
                yield from self._close(st, "end_of_capture", summary.frames, last_ts)

    @staticmethod
    def _first_frame(path: str) -> CaptureStarted | None:
        """Time 0, the file's first frame (the display filter may hide it), as natively."""
        try:
            with CaptureFile(path) as cap:
                for _, ts, *_rest in cap.records():
                    return CaptureStarted(ts, 1)
        except (CaptureError, OSError):
            pass
        return None

    def _frame_count(self) -> int:
        """Frames in the file (the display filter hides the last ones when they are not
        MQTT, SYN, FIN, RST ...): counted by the file reader, as the native engine does."""
        try:
            with CaptureFile(self.path) as cap:
                return sum(1 for _ in cap.records())
        except (CaptureError, OSError):
            return 0

    def _sides(self, st: _Stream, src: Endpoint, dst: Endpoint, flags: int,
               broker_ports: set[int]) -> None:
        st.handshake = bool(flags & 0x02)
        if flags & 0x02 and not flags & 0x10:
            st.client, st.broker, st.sides_known = src, dst, True
        elif flags & 0x02:
            st.client, st.broker, st.sides_known = dst, src, True
        elif dst.port in broker_ports and src.port not in broker_ports:
            st.client, st.broker, st.sides_known = src, dst, True
        elif src.port in broker_ports and dst.port not in broker_ports:
            st.client, st.broker, st.sides_known = dst, src, True
        else:
            st.client, st.broker = src, dst
        if dst.port in self._tls_ports or src.port in self._tls_ports:
            st.tls = True

    def _open(self, st: _Stream, frame: int, ts: int) -> Iterator[Event]:
        st.opened = True
        self.summary.connections += 1
        yield ConnectionOpened(st.first_ts, st.make_info(), st.first_frame, st.handshake)

    def _close(self, st: _Stream, how: str, frame: int, ts: int) -> Iterator[Event]:
        info = st.info or st.make_info()
        if st.tls and self.tls_keylog and not st.has_mqtt:
            self.summary.anomalies += 1
            yield Anomaly(ts, info, None, AnomalyKind.ENCRYPTED, "TLS connection not decrypted: "
                          "the key log has no secrets for it", frame)
        yield ConnectionClosed(ts, info, how, st.closed_by, frame, None)

    def _mqtt(self, st: _Stream, layers: dict[str, Any], pdus: list[Any], src: Endpoint,
              frame: int, ts: int) -> Iterator[Event]:
        malformed = "_ws.malformed" in layers
        summary = self.summary
        for i, raw in enumerate(pdus):
            if not isinstance(raw, dict):
                continue
            m = _flat(raw)
            first = _int(m, "mqtt.hdrflags")
            ptype = first >> 4
            d = st.direction(src)
            if not st.sides_known and (ptype in _FROM_CLIENT or ptype in _FROM_BROKER):
                if (ptype in _FROM_CLIENT) != (d is Direction.C2B):
                    st.client, st.broker = st.broker, st.client
                    d = d.reverse
                st.sides_known = True
                st.make_info()
            info = st.info or st.make_info()
            sd = d if st.sides_known else None
            if ptype == 1 and "mqtt.ver" in m:
                st.version = _int(m, "mqtt.ver")
                st.version_known = True
            if not st.first_done:
                st.first_done = True
                if ptype != 1:
                    how = ("the capture started after the connection was set up"
                           if not st.handshake else "the client did not start with CONNECT "
                           "[MQTT-3.1.0-1]")
                    summary.anomalies += 2
                    yield Anomaly(ts, info, sd, AnomalyKind.MISSING_CONNECT,
                                  f"first MQTT packet is {PacketType(ptype).name}, not CONNECT: "
                                  f"{how}", frame)
                    yield Anomaly(ts, info, sd, AnomalyKind.VERSION_ASSUMED,
                                  "no CONNECT seen: tshark decodes as MQTT "
                                  f"{_DEFAULT_VERSION[st.version][6:]} (mqtt.default_version)",
                                  frame)
            kind, detail = _problem(m, ptype)
            if malformed and i == len(pdus) - 1 and kind is None:
                kind, detail = AnomalyKind.MALFORMED, "tshark: Malformed Packet"
            packet = None
            if kind is None:
                try:
                    packet = _packet(m, ptype, st.version)
                except (ValueError, KeyError, TypeError) as exc:
                    kind, detail = AnomalyKind.MALFORMED, f"tshark fields unusable: {exc}"
            if packet is None:
                summary.anomalies += 1
                yield Anomaly(ts, info, sd, kind or AnomalyKind.MALFORMED,
                              f"{PacketType(ptype).name}: {detail}", frame, ptype)
                continue
            if type(packet) is Connect:
                st.version = packet.protocol_version
                st.version_known = True
            st.has_mqtt = True
            summary.mqtt_packets += 1
            hlen = 2 + (_int(m, "mqtt.len") >= 128) + (_int(m, "mqtt.len") >= 16384) + (
                _int(m, "mqtt.len") >= 2097152)
            version = st.version
            yield MqttPacketEvent(ts, info, sd, packet, hlen + _int(m, "mqtt.len"), frame,
                                  frame, version, not st.version_known)


def _analysis_flags(tcp: dict[str, Any]) -> set[str]:
    """The ``tcp.analysis.*`` flags of a frame (several come as a list of expert items)."""
    found: set[str] = set()
    todo: list[Any] = [tcp.get("tcp.analysis")]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k.startswith("tcp.analysis.") and k[13:] in _TCP_KINDS:
                    found.add(k[13:])
                todo.append(v)
        elif isinstance(node, list):
            todo += node
    return found


def _evidence(ts: int, frame: int, sid: int, src: Endpoint, dst: Endpoint,
              flagged: set[str]) -> Iterator[TcpEvidence]:
    """The TcpEvidence of a frame's flags, in the order of the rules (:data:`_KINDS`)."""
    for kind in _KINDS:
        if kind in flagged:
            yield TcpEvidence(ts, frame, sid, src, dst, kind)


def _problem(m: dict[str, Any], ptype: int) -> tuple[AnomalyKind | None, str]:
    """An anomaly kind for what tshark shows but the codec refuses, named as the native engine
    names them."""
    if ptype == 0:
        return AnomalyKind.UNASSIGNED_MSGTYPE, "reserved control packet type 0"
    if ptype == 3 and ((_int(m, "mqtt.hdrflags") >> 1) & 3) == 3:
        return AnomalyKind.INVALID_QOS, "PUBLISH with QoS 3 [MQTT-3.3.1-4]"
    return None, ""


def _codes(m: dict[str, Any], *keys: str) -> tuple[int, ...]:
    for key in keys:
        if key in m:
            return tuple(int(v) for v in _many(m[key]))
    return ()


def _reason(m: dict[str, Any], key: str) -> int:
    return _int(m, key, 0)


def _packet(m: dict[str, Any], ptype: int, version: int) -> Packet | None:
    """Rebuild a packet from tshark's fields (properties excepted)."""
    flags = _int(m, "mqtt.hdrflags") & 0x0F
    if ptype == 1:
        level = _int(m, "mqtt.ver", version)
        will = None
        if _int(m, "mqtt.conflag.willflag"):
            will = Will(str(m.get("mqtt.willtopic", "")), _hexbytes(m.get("mqtt.willmsg")),
                        _int(m, "mqtt.conflag.qos"), bool(_int(m, "mqtt.conflag.retain")))
        user = m.get("mqtt.username") if _int(m, "mqtt.conflag.uname") else None
        pw = str(m.get("mqtt.passwd", "")).encode() if _int(m, "mqtt.conflag.passwd") else None
        return Connect(str(_one(m.get("mqtt.clientid", ""))), level,
                       bool(_int(m, "mqtt.conflag.cleansess")), _int(m, "mqtt.kalive"),
                       None if user is None else str(user), pw, will)
    if ptype == 2:
        code = _int(m, "mqtt.connack.reason_code", _int(m, "mqtt.conack.val"))
        return ConnAck(bool(_int(m, "mqtt.conack.flags.sp")), code)
    if ptype == 3:
        qos = (flags >> 1) & 3
        pid = _int(m, "mqtt.msgid") if qos else None
        return Publish(str(_one(m.get("mqtt.topic", ""))), _hexbytes(m.get("mqtt.msg")), qos,
                       bool(flags & 8), bool(flags & 1), pid)
    if 4 <= ptype <= 7:
        cls = (PubAck, PubRec, PubRel, PubComp)[ptype - 4]
        key = ("mqtt.puback.reason_code", "mqtt.pubrec.reason_code", "mqtt.pubrel.reason_code",
               "mqtt.pubcomp.reason_code")[ptype - 4]
        ack: Packet = cls(_int(m, "mqtt.msgid"), _reason(m, key))
        return ack
    if ptype == 8:
        topics = [str(t) for t in _many(m.get("mqtt.topic"))]
        opts = _many(m.get("mqtt.subscription_options_qos") or m.get("mqtt.sub.qos"))
        subs = tuple(Subscription(t, int(opts[i]) if i < len(opts) else 0)
                     for i, t in enumerate(topics))
        return Subscribe(_int(m, "mqtt.msgid"), subs)
    if ptype == 9:
        return SubAck(_int(m, "mqtt.msgid"), _codes(m, "mqtt.suback.reason_code",
                                                     "mqtt.suback.qos"))
    if ptype == 10:
        return Unsubscribe(_int(m, "mqtt.msgid"),
                           tuple(str(t) for t in _many(m.get("mqtt.topic"))))
    if ptype == 11:
        return UnsubAck(_int(m, "mqtt.msgid"), _codes(m, "mqtt.unsuback.reason_code"))
    if ptype == 12:
        return PingReq()
    if ptype == 13:
        return PingResp()
    if ptype == 14:
        return Disconnect(_reason(m, "mqtt.disconnect.reason_code"))
    if ptype == 15:
        return Auth(_reason(m, "mqtt.auth.reason_code"))
    return None


def _packets(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The ``layers`` of each packet in tshark's pretty-printed JSON array, one at a time
    (the array of a large capture does not fit in memory)."""
    buf: list[bytes] = []
    inside = False
    for line in stream:
        if not inside:
            if line.rstrip() == b"  {":
                inside = True
                buf = [b"{"]
            continue
        stripped = line.rstrip()
        if stripped in (b"  }", b"  },"):
            buf.append(b"}")
            inside = False
            obj = json.loads(b"".join(buf))
            source = obj.get("_source", {})
            yield source.get("layers", {})
        else:
            buf.append(line)

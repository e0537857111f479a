"""One entry point for "the events of this capture file", by the native decoder or by tshark.

Why here and not in :mod:`qosinspect.capture.decoder`: the tshark engine starts a subprocess, and
``capture/`` is the pure layer; keeping the choice of engine above both removes the import cycle
``decoder`` <-> ``tshark`` that the choice used to make.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, cast

from ..capture.decoder import CaptureDecoder, EventStream
from ..capture.pcapfile import CaptureFile
from ..events import Anomaly, ConnectionClosed, Event, MqttPacketEvent
from .convert import converted

__all__ = ["ENGINES", "iter_capture_events"]

_log = logging.getLogger("qosinspect")

#: The engines a user can choose (``--engine``).
ENGINES = ("native", "tshark")


def iter_capture_events(source: str | os.PathLike[str] | CaptureFile, *,
                        ports: Iterable[int] = (1883,), tls_ports: Iterable[int] = (8883,),
                        detect_any_port: bool = True, mqtt_version: int = 4,
                        engine: str = "native", tls_keylog: str | None = None,
                        keep_tcp_stats: bool = True) -> EventStream:
    """The events of a capture, in capture order, from the chosen ``engine``.

    ``engine="native"`` is :func:`qosinspect.capture.iter_events` (``tls_keylog`` is ignored
    there). ``engine="tshark"`` asks Wireshark's dissector instead (:mod:`.tshark`; it needs a
    path and tshark installed), which can also decrypt MQTT over TLS given a ``tls_keylog``
    file. A file in another format Wireshark reads (Sniffer, snoop, NetMon, ERF ...) is read
    through a pcapng copy made by ``editcap`` (:mod:`.convert`; said on stderr), or the error
    names the format and the command. With the native engine, a pcapng that carries TLS
    secrets in Decryption Secrets Blocks (:mod:`qosinspect.capture.secrets`) has its encrypted
    connections' MQTT decoded by the tshark engine, merged in frame order (said on stderr).
    Raises :class:`~qosinspect.errors.CaptureError` for an unreadable file and ``ValueError``
    for bad arguments.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if isinstance(source, CaptureFile):
        return _engine(source, ports, tls_ports, detect_any_port, mqtt_version, engine,
                       tls_keylog, keep_tcp_stats)
    stack = contextlib.ExitStack()
    path = stack.enter_context(converted(os.fspath(source)))
    try:
        inner = _engine(path if path != os.fspath(source) else source, ports, tls_ports,
                        detect_any_port, mqtt_version, engine, tls_keylog, keep_tcp_stats)
        tls: Iterable[Event] | None = None
        if engine == "native" and path != "-" and os.path.isfile(path):
            tls = _secrets_handover(path, ports, tls_ports, detect_any_port, mqtt_version)
    except BaseException:
        stack.close()
        raise

    def events() -> Iterator[Event]:
        with stack:
            if tls is None:
                yield from inner
            else:
                yield from _merged(inner, tls)

    gen = events()
    weakref.finalize(gen, stack.close)  # never iterated: the copy goes all the same
    return EventStream(gen, inner.summary, lambda: inner.position)


def _engine(source: str | os.PathLike[str] | CaptureFile, ports: Iterable[int],
            tls_ports: Iterable[int], detect_any_port: bool, mqtt_version: int, engine: str,
            tls_keylog: str | None, keep_tcp_stats: bool) -> EventStream:
    if engine == "tshark":
        from .tshark import TsharkDecoder

        if isinstance(source, CaptureFile):
            raise ValueError("engine='tshark' needs a file path, not an open CaptureFile")
        tdec = TsharkDecoder(source, ports=ports, tls_ports=tls_ports,
                             detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                             tls_keylog=tls_keylog)
        return EventStream(tdec, tdec.summary)
    dec = CaptureDecoder(source, ports=ports, tls_ports=tls_ports,
                         detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                         keep_tcp_stats=keep_tcp_stats)
    return EventStream(dec, dec.summary, lambda: dec.position)


def _secrets_handover(path: str, ports: Iterable[int], tls_ports: Iterable[int],
                      detect_any_port: bool, mqtt_version: int) -> list[Event] | None:
    """For a pcapng that carries TLS secrets (Decryption Secrets Blocks): the MQTT packets of
    its encrypted connections, from the tshark engine (which reads the blocks itself); the
    native engine decodes the rest. Said on stderr (a warning on the ``qosinspect`` logger).
    ``None`` when the file carries no TLS secrets."""
    n = _tls_secrets(path)
    if not n:
        return None
    from .tshark import TsharkDecoder

    tshark = shutil.which("tshark")
    if tshark is None:
        _log.warning("%s carries TLS secrets (%d Decryption Secrets Block%s) but tshark is not "
                     "installed: its encrypted connections are reported as encrypted, not "
                     "decoded", path, n, "" if n == 1 else "s")
        return None
    dec = TsharkDecoder(path, ports=ports, tls_ports=tls_ports,
                        detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                        tshark=tshark)
    out: list[Event] = []
    conns: set[int] = set()
    for ev in dec:
        packet = type(ev) is MqttPacketEvent or (type(ev) is Anomaly
                                                 and ev.packet_type is not None)
        conn = getattr(ev, "conn", None)
        if packet and conn is not None and conn.transport == "tls":
            out.append(ev)
            conns.add(conn.conn_id)
    _log.warning("%s carries TLS secrets (%d Decryption Secrets Block%s): the MQTT inside its "
                 "encrypted connection%s %s is decoded by the tshark engine (Wireshark's "
                 "dissector), everything else natively", path, n, "" if n == 1 else "s",
                 "" if len(conns) == 1 else "s",
                 ", ".join(map(str, sorted(conns))) or "(none found)")
    return out


def _merged(native: Iterable[Event], tls: Iterable[Event]) -> Iterator[Event]:
    """Native events with the tshark engine's packets of encrypted connections put in frame
    order (a packet before a native event of a later frame, and before the close of its
    frame), carrying the native engine's ConnectionInfo of their connection."""
    pending = iter(tls)
    nxt = next(pending, None)
    infos: dict[int, Any] = {}
    for ev in native:
        conn = getattr(ev, "conn", None)
        if conn is not None:
            infos[conn.conn_id] = conn
        frame = getattr(ev, "frame", 0)
        closing = type(ev) is ConnectionClosed
        while nxt is not None and (nxt.frame < frame or (closing and nxt.frame == frame)):
            yield _as_native(nxt, infos)
            nxt = next(pending, None)
        yield ev
    while nxt is not None:
        yield _as_native(nxt, infos)
        nxt = next(pending, None)


def _as_native(ev: Any, infos: dict[int, Any]) -> Event:
    info = infos.get(ev.conn.conn_id)
    if info is None:
        return cast(Event, ev)
    if type(ev) is MqttPacketEvent:
        return ev._replace(conn=info)
    return cast(Event, dataclasses.replace(ev, conn=info))


def _tls_secrets(path: str) -> int:
    """How many TLS key log Decryption Secrets Blocks the file carries (0 if unreadable)."""
    import zlib

    from ..capture.pcapfile import capture_format, file_head
    from ..capture.secrets import TLS_KEY_LOG, decryption_secrets
    from ..errors import CaptureError

    try:
        # Only pcapng carries them: a pcap (a gzip one above all) is not opened a second time.
        if capture_format(file_head(path), path) != "pcapng":
            return 0
    except (CaptureError, OSError, EOFError, zlib.error):
        return 0
    try:
        with CaptureFile(path) as cap:
            return sum(1 for s in decryption_secrets(cap) if s.secrets_type == TLS_KEY_LOG)
    except (CaptureError, OSError):
        return 0

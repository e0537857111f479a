"""One entry point for "the events of this capture file", by the native decoder or by tshark.

Why here and not in :mod:`qosinspect.capture.decoder`: the tshark engine starts a subprocess, and
``capture/`` is the pure layer; keeping the choice of engine above both removes the import cycle
``decoder`` <-> ``tshark`` that the choice used to make.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable, Iterator

from ..capture.decoder import CaptureDecoder, EventStream
from ..capture.pcapfile import CaptureFile
from ..events import Event
from .convert import converted

__all__ = ["ENGINES", "iter_capture_events"]

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
    names the format and the command. Raises :class:`~qosinspect.errors.CaptureError` for an
    unreadable file and ``ValueError`` for bad arguments.
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
    except BaseException:
        stack.close()
        raise

    def events() -> Iterator[Event]:
        with stack:
            yield from inner

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

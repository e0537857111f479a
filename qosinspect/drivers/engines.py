"""One entry point for "the events of this capture file", by the native decoder or by tshark.

Why here and not in :mod:`qosinspect.capture.decoder`: the tshark engine starts a subprocess, and
``capture/`` is the pure layer; keeping the choice of engine above both removes the import cycle
``decoder`` <-> ``tshark`` that the choice used to make.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..capture.decoder import CaptureDecoder, EventStream
from ..capture.pcapfile import CaptureFile

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
    file. Raises :class:`~qosinspect.errors.CaptureError` for an unreadable file and
    ``ValueError`` for bad arguments.
    """
    if engine == "tshark":
        from .tshark import TsharkDecoder

        if isinstance(source, CaptureFile):
            raise ValueError("engine='tshark' needs a file path, not an open CaptureFile")
        tdec = TsharkDecoder(source, ports=ports, tls_ports=tls_ports,
                             detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                             tls_keylog=tls_keylog)
        return EventStream(tdec, tdec.summary)
    if engine != "native":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    dec = CaptureDecoder(source, ports=ports, tls_ports=tls_ports,
                         detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                         keep_tcp_stats=keep_tcp_stats)
    return EventStream(dec, dec.summary, lambda: dec.position)

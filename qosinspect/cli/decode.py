"""``qosinspect decode CAPTURE``: one line per MQTT packet (and anomaly), like tshark's summary.

The work is :func:`qosinspect.drivers.iter_capture_events` and the output layer
(:func:`qosinspect.report.output.write_events`); this command wires the shared capture options
to them, draws a progress bar on a terminal and turns a bad file into a message (after
printing everything decoded before it) and a non-zero exit.
"""

from __future__ import annotations

import sys

from . import main
from .capture_options import CaptureSource, capture_source
from .output_options import format_option
from .progress import Progress

__all__ = ["Progress", "decode"]


@main.command()
@capture_source
@format_option("table", "jsonl", "csv")
def decode(source: CaptureSource, fmt: str) -> None:
    """Decode CAPTURE (pcap or pcapng, gzip allowed, '-' for stdin): one line per MQTT packet.

    Columns and JSON fields: frame (the frame that completed the packet, as Wireshark numbers
    them), ts, ts_ns, src, dst, direction (c2b/b2c), version, type, qos, dup, retain,
    packet_id, topic, payload_len, client_id, reason_code(s). Anomalies (malformed packets,
    stream gaps, a missing CONNECT ...) are lines of type ANOMALY with a kind and a detail.
    """
    from ..report.output import write_events

    err = sys.stderr
    with source.reading():
        stream = source.events(keep_tcp_stats=False)
        progress = Progress(err, lambda: stream.position) if err.isatty() else None
        try:
            write_events(stream, fmt, tick=progress.tick if progress is not None else None)
        finally:
            if progress is not None:
                progress.close()
    if fmt == "table" and err.isatty():
        s = stream.summary
        err.write(f"{s.mqtt_packets:,} MQTT packets, {s.anomalies:,} anomalies, "
                  f"{s.connections:,} connections, {s.frames:,} frames\n")

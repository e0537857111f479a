"""``qosinspect decode CAPTURE``: one line per MQTT packet (and anomaly), like tshark's summary.

The work is :func:`qosinspect.drivers.iter_capture_events` and :mod:`qosinspect.capture.lines`;
this module wires options, writes lines in batches, draws a progress bar on a terminal and turns
a bad file into a message (after printing everything decoded before it) and a non-zero exit.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import IO

import click

from ..capture.lines import formatter
from ..drivers import iter_capture_events
from ..errors import QosinspectError
from . import main
from .capture_options import MQTT_VERSIONS

__all__ = ["decode"]



class Progress:
    """A one-line progress bar on a terminal's stderr, shown once a run takes over a second."""

    def __init__(self, stream: IO[str], position: object, *, delay: float = 1.0) -> None:
        self.stream = stream
        self.position = position
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False
        self.next = self.start + delay

    def tick(self, frames: int) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + 0.25
        done, total = self.position()  # type: ignore[operator]
        frac = done / total if total else 0.0
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {frac:6.1%} {frames:,} events {now - self.start:5.1f} s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on (1883 always is); repeatable.")
@click.option("--no-detect", is_flag=True,
              help="Do not look for MQTT (a CONNECT or an MQTT WebSocket upgrade) on other "
                   "ports.")
@click.option("--mqtt-version", type=click.Choice(list(MQTT_VERSIONS)), default="4",
              show_default=True,
              help="Version for connections whose CONNECT is not in the capture and whose "
                   "bytes do not tell (3 = 3.1, 4 = 3.1.1, 5 = 5.0).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]),
              default="table", show_default=True, help="Output format.")
@click.option("--engine", type=click.Choice(["native", "tshark"]), default="native",
              show_default=True,
              help="native: qosinspect's decoder; tshark: Wireshark's dissector (cross-check).")
@click.option("--tls-keylog", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TLS key log file (SSLKEYLOGFILE), to decrypt MQTT over TLS "
                   "(--engine tshark).")
def decode(capture: str, ports: tuple[int, ...], no_detect: bool, mqtt_version: str,
           fmt: str, engine: str, tls_keylog: str | None) -> None:
    """Decode CAPTURE (pcap or pcapng, gzip allowed, '-' for stdin): one line per MQTT packet.

    Columns and JSON fields: frame (the frame that completed the packet, as Wireshark numbers
    them), ts, ts_ns, src, dst, direction (c2b/b2c), version, type, qos, dup, retain,
    packet_id, topic, payload_len, client_id, reason_code(s). Anomalies (malformed packets,
    stream gaps, a missing CONNECT ...) are lines of type ANOMALY with a kind and a detail.
    """
    if tls_keylog and engine != "tshark":
        raise click.UsageError("--tls-keylog needs --engine tshark")
    fmt_line = formatter(fmt)
    out = sys.stdout
    err = sys.stderr
    try:
        stream = iter_capture_events(capture, ports=(1883, *ports),
                                     detect_any_port=not no_detect,
                                     mqtt_version=MQTT_VERSIONS[mqtt_version], engine=engine,
                                     tls_keylog=tls_keylog, keep_tcp_stats=False)
        progress = Progress(err, lambda: stream.position) if err.isatty() else None
        head = fmt_line.header()
        if head:
            out.write(head)
        # What exists now (the interpreter, the imported modules) outlives the run: keep the
        # cyclic GC from walking it again and again while millions of short-lived packets go
        # by (the decoder makes cycles only per connection, which the young generations
        # still collect).
        gc.freeze()
        try:
            fmt_line.write_all(stream, out.write,
                               progress.tick if progress is not None else None)
        finally:
            out.flush()
            if progress is not None:
                progress.close()
            gc.unfreeze()
    except BrokenPipeError:
        raise                       # the reader went away (| head): main() ends quietly
    except (QosinspectError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "table" and err.isatty():
        s = stream.summary
        err.write(f"{s.mqtt_packets:,} MQTT packets, {s.anomalies:,} anomalies, "
                  f"{s.connections:,} connections, {s.frames:,} frames\n")

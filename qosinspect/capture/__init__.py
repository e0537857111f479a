"""The capture decoder: pcap/pcapng files to MQTT packet events (see :mod:`.decoder`).

Modules: :mod:`.pcapfile` (pcap/pcapng readers), :mod:`.layers` (link/IP/TCP parsing),
:mod:`.reassembly` (TCP reassembly), :mod:`.websocket` (MQTT over WebSocket), :mod:`.records`
(what goes up), :mod:`.pipeline` (the glue to per-direction streams), :mod:`.version` (the MQTT
version when CONNECT is missing), :mod:`.decoder` (streams to events); :mod:`.writer` writes
packets, frames and pcap/pcapng files (the generator's synthetic capture, the tests' captures
made to order). Everything here is standard library only and starts no process, so importing it
is light; Wireshark's dissector as a second source of the same events is
:mod:`qosinspect.drivers.tshark`.
"""

from .decoder import CaptureDecoder, CaptureSummary, EventStream, iter_events

__all__ = ["CaptureDecoder", "CaptureSummary", "EventStream", "iter_events"]

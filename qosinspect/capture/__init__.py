"""The capture decoder's lower layers: capture files to reassembled per-direction TCP streams.

Modules: :mod:`.pcapfile` (pcap/pcapng readers), :mod:`.layers` (link/IP/TCP parsing),
:mod:`.reassembly` (TCP reassembly), :mod:`.websocket` (MQTT over WebSocket), :mod:`.records` (what
goes up) and :mod:`.pipeline` (the glue). Import from the submodules; this package imports nothing
so that ``import qosinspect.capture`` stays light.
"""

__all__: list[str] = []

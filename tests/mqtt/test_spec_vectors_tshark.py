"""The hand-written specification vectors read by an independent dissector: Wireshark's.

The vectors of each version go into a synthetic capture (a CONNECT of that version first, so that
tshark knows the version; one packet per TCP segment), tshark dissects it, and its fields must
equal the vectors' expected fields, compared exactly as the peers' vectors are
(test_peer_vectors.compare_with_tshark). A byte slip in a hand-written vector that the codec
happened to share would be caught here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qosinspect.mqtt import ConnAck, PingResp, SubAck, UnsubAck
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

from ._vectors import spec_packets
from .test_peer_vectors import compare_with_tshark


def _make_peer_vectors() -> ModuleType:
    path = PROJECT_ROOT / "tests" / "vectors" / "make_peer_vectors.py"
    spec = importlib.util.spec_from_file_location("make_peer_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_peer_vectors", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.tools
@pytest.mark.parametrize("version", [3, 4, 5])
def test_tshark_reads_the_spec_vectors_as_written(version: int, tmp_path: Path) -> None:
    require_tool("tshark")
    mpv = _make_peer_vectors()
    vectors = [v for v in spec_packets() if v.version == version]
    connect = next(v for v in vectors if v.name.startswith("connect"))
    sent = [connect, *[v for v in vectors if v is not connect]]
    conv = TcpConversation()
    for v in sent:
        from_broker = isinstance(v.packet, ConnAck | SubAck | UnsubAck | PingResp)
        conv.send("b2c" if from_broker else "c2b", v.data, segment_size=1460)
    conv.close()
    pcap = tmp_path / f"spec-v{version}.pcap"
    pcap.write_bytes(pcap_bytes(render(conv.segments)))

    pdus: list[dict[str, Any]] = []
    for frame in mpv.tshark_json(pcap, []):
        layers = frame["_source"]["layers"]
        for m, raw in zip(mpv.as_list(layers.get("mqtt")), mpv.raw_list(layers.get("mqtt_raw")),
                          strict=True):
            pdus.append({"hex": raw[0], "tshark": mpv.decode_pdu(m),
                         "malformed": "_ws.malformed" in layers})
    assert len(pdus) == len(sent)
    for v, pdu in zip(sent, pdus, strict=True):
        assert pdu["hex"] == v.data.hex(), v.name
        assert not pdu["malformed"], v.name
        assert v.packet is not None
        compared = compare_with_tshark(v.packet, {"name": v.id, "hex": pdu["hex"],
                                                  "version": version, "tshark": pdu["tshark"]})
        assert compared >= 3

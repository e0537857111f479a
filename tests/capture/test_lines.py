"""The line formats of ``qosinspect decode``: fields per packet type, escaping, fast path = slow."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.capture.lines import FIELDS, event_row, formatter
from qosinspect.events import (
    Anomaly,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    MqttPacketEvent,
)
from qosinspect.mqtt import (
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
)
from qosinspect.mqtt.enums import Direction

V4 = ConnectionInfo(3, Endpoint("10.0.0.1", 50000), Endpoint("10.0.0.2", 1883))
V6 = ConnectionInfo(4, Endpoint("fd00::1", 50001), Endpoint("fd00::2", 1883))
TS = 1_700_000_000_123_456_789


def ev(packet: Packet, d: Direction | None = Direction.C2B, conn: ConnectionInfo = V4,
       version: int | None = 4, assumed: bool = False) -> MqttPacketEvent:
    return MqttPacketEvent(TS, conn, d, packet, 99, 12, 10, version, assumed)


@pytest.mark.parametrize("packet, expect", [
    (Connect("cid"), {"type": "CONNECT", "client_id": "cid", "qos": None, "packet_id": None}),
    (ConnAck(True, 0), {"type": "CONNACK", "reason_code": 0}),
    (Publish("a/b", b"xyz", 2, True, True, 9), {"type": "PUBLISH", "qos": 2, "dup": True,
                                                "retain": True, "packet_id": 9,
                                                "topic": "a/b", "payload_len": 3}),
    (Publish("a", b"", 0), {"qos": 0, "dup": False, "retain": False, "packet_id": None,
                            "payload_len": 0}),
    (PubAck(5, 0x10), {"type": "PUBACK", "packet_id": 5, "reason_code": 16, "qos": None}),
    (PubRec(5), {"type": "PUBREC", "reason_code": 0}),
    (PubRel(5), {"type": "PUBREL", "qos": None, "dup": None}),  # no QoS: flags 0b0010
    (PubComp(5), {"type": "PUBCOMP", "packet_id": 5}),
    (Subscribe(6, (Subscription("a/#", 1),)), {"type": "SUBSCRIBE", "packet_id": 6,
                                               "qos": None, "topic": None}),
    (SubAck(6, (1, 0x80)), {"type": "SUBACK", "reason_codes": [1, 128], "reason_code": None}),
    (Unsubscribe(7, ("a/#",)), {"type": "UNSUBSCRIBE", "packet_id": 7}),
    (UnsubAck(7), {"type": "UNSUBACK", "reason_codes": []}),
    (PingReq(), {"type": "PINGREQ"}), (PingResp(), {"type": "PINGRESP"}),
    (Disconnect(4), {"type": "DISCONNECT", "reason_code": 4}),
    (Auth(0x18), {"type": "AUTH", "reason_code": 0x18}),
])
def test_fields_per_packet_type(packet: Packet, expect: dict[str, object]) -> None:
    row = event_row(ev(packet))
    assert list(row) == list(FIELDS)
    for k, v in expect.items():
        assert row[k] == v, k
    assert row["frame"] == 12 and row["ts_ns"] == TS and row["wire_len"] == 99
    assert row["src"] == "10.0.0.1:50000" and row["dst"] == "10.0.0.2:1883"
    assert row["direction"] == "c2b" and row["conn_id"] == 3 and row["kind"] is None


def test_directions_ipv6_and_unknown_sides() -> None:
    row = event_row(ev(PubAck(1), Direction.B2C, V6))
    assert (row["src"], row["dst"], row["direction"]) == ("[fd00::2]:1883", "[fd00::1]:50001",
                                                          "b2c")
    row = event_row(ev(PubAck(1), None, version=None, assumed=True))
    assert row["direction"] is None and row["version"] is None and row["version_assumed"]


def test_anomaly_rows_in_every_format() -> None:
    a = Anomaly(TS, V4, Direction.B2C, "stream_gap", 'lost "5" bytes, then, more', 44, None)
    row = event_row(a)
    assert row["type"] == "ANOMALY" and row["kind"] == "stream_gap" and row["frame"] == 44
    assert json.loads(formatter("jsonl")(a) or "") == row
    line = formatter("csv")(a) or ""
    parsed = next(csv.reader(io.StringIO(line)))
    assert parsed[FIELDS.index("detail")] == 'lost "5" bytes, then, more'
    table = formatter("table")(a) or ""
    assert "ANOMALY stream_gap" in table and table.split()[0] == "44"
    frag = Anomaly(TS, None, None, "ip_fragment", "fragmented", 3)
    assert event_row(frag)["src"] is None and "ip_fragment" in (formatter("table")(frag) or "")


def test_other_events_are_not_lines() -> None:
    for fmt in ("table", "jsonl", "csv"):
        assert formatter(fmt)(ConnectionOpened(TS, V4, 1)) is None
    with pytest.raises(ValueError):
        formatter("xml")


topics = st.text(min_size=1, max_size=20).filter(
    lambda t: "\x00" not in t and "+" not in t and "#" not in t)


@settings(max_examples=80, deadline=None)
@given(topic=topics, payload=st.binary(max_size=50), qos=st.integers(0, 2),
       dup=st.booleans(), retain=st.booleans(), pid=st.integers(1, 65535),
       d=st.sampled_from([Direction.C2B, Direction.B2C, None]), conn=st.sampled_from([V4, V6]),
       ts=st.integers(0, 2**63 - 1), version=st.sampled_from([3, 4, 5, None]))
def test_fast_jsonl_equals_the_generic_row(topic: str, payload: bytes, qos: int, dup: bool,
                                           retain: bool, pid: int, d: Direction | None,
                                           conn: ConnectionInfo, ts: int,
                                           version: int | None) -> None:
    """The hand-written JSONL of PUBLISH and the acks is exactly ``event_row`` as JSON (any
    topic: quotes, backslashes, control and non-ASCII characters), with an exact ``ts``."""
    fmt = formatter("jsonl")
    pub = Publish(topic, payload, qos, dup and qos > 0, retain, pid if qos else None)
    for packet in (pub, PubAck(pid), PubRel(pid, 0x92)):
        e = MqttPacketEvent(ts, conn, d, packet, 10, 7, 5, version, False)
        got = json.loads(fmt(e) or "")
        want = event_row(e)
        assert got.pop("ts") == pytest.approx(want.pop("ts"), abs=1e-6)
        assert got == want
        line = fmt(e) or ""
        assert f'"ts":{ts // 10**9}.{ts % 10**9:09d},' in line  # exact to the nanosecond

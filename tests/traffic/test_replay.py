"""``qosinspect replay``: the messages a capture's clients sent are published again, once each,
with their topics, payloads, QoS, retain and MQTT 5 properties, in order and never earlier than
the (scaled) original timing; what the broker acknowledged or refused is reported."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.broker.auth import AccessControl, Authenticator
from qosinspect.broker.server import Listener, ServerConfig
from qosinspect.broker.thread import BrokerThread
from qosinspect.cli import main
from qosinspect.events import Event, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import Connect, Publish
from qosinspect.mqtt.properties import PropertyId
from qosinspect.testing.tools import PROJECT_ROOT
from qosinspect.traffic.replay import load_plan, replay

CAPTURES = PROJECT_ROOT / "captures"
NS = 1_000_000_000


def _broker(tap: list[Event], acl: str | None = None) -> BrokerThread:
    auth = Authenticator(allow_anonymous=True,
                         acl=AccessControl.parse(acl) if acl is not None else None)
    return BrokerThread(ServerConfig([Listener("127.0.0.1", 0)]), auth=auth, tap=tap.append)


def _received(tap: list[Event]) -> list[tuple[str, MqttPacketEvent]]:
    """(client id, event) of every PUBLISH the broker received."""
    ids: dict[int, str] = {}
    out = []
    for e in list(tap):
        if isinstance(e, MqttPacketEvent) and e.direction is Direction.C2B:
            if isinstance(e.packet, Connect):
                ids[e.conn.conn_id] = e.packet.client_id
            elif isinstance(e.packet, Publish):
                out.append((ids.get(e.conn.conn_id, "?"), e))
    return out


def test_plan_sends_each_message_once_without_ids_or_aliases() -> None:
    plan = load_plan(CAPTURES / "mosquitto-redelivery.pcap")
    # The capture's publishers send a packet id twice (the second with DUP=1): one message.
    assert plan.resends_skipped > 0
    assert all(not m.publish.dup and m.publish.packet_id is None for m in plan.messages)
    times = [m.ts_ns for m in plan.messages]
    assert times == sorted(times)
    v5 = load_plan(CAPTURES / "mosquitto-v5-props.pcap")
    alias = [m for m in v5.messages if m.client == "pub5-alias"]
    assert [m.publish.topic for m in alias] == ["demo/v5/alias"] * 3
    assert all(m.publish.properties.topic_alias is None for m in alias)
    assert alias[0].publish.properties.correlation_data == b"corr-1234"
    assert {c.client_id: c.version for c in v5.clients.values()}["pub5-alias"] == 5
    only = load_plan(CAPTURES / "mosquitto-v5-props.pcap", clients=("pub5-q2",),
                     topics=("demo/#",))
    assert [m.publish.topic for m in only.messages] == ["demo/v5/q2"]
    assert only.filtered_out == len(v5.messages) - 1


def test_replay_publishes_the_same_messages_and_reports_refusals() -> None:
    plan = load_plan(CAPTURES / "mosquitto-v5-props.pcap")
    tap: list[Event] = []
    with _broker(tap, acl="topic readwrite demo/#\n") as broker:
        summary = asyncio.run(replay(plan, "127.0.0.1", broker.port, speed=0, same_ids=True))
    # speed 0 sends as fast as each client can: the order holds per client, not across the
    # clients' connections (the broker reads its sockets in whatever order they become ready)
    got = sorted(_received(tap), key=lambda ce: ce[0])
    messages = sorted(plan.messages, key=lambda m: m.client)
    assert [(cid, e.packet.topic, e.packet.payload, e.packet.qos, e.packet.retain)
            for cid, e in got] == [
        (m.client, m.publish.topic, m.publish.payload, m.publish.qos, m.publish.retain)
        for m in messages]
    for (_cid, e), m in zip(got, messages, strict=True):
        sent = e.packet.properties.without(int(PropertyId.TOPIC_ALIAS))
        assert sent.to_dict() == m.publish.properties.to_dict()
        assert e.version == 5
    # The ACL denies secret/#: PUBACK and PUBREC carry 0x87, Not authorized (MQTT 5, 3.4.2.1)
    refused = {cid: c["reason_codes"] for cid, c in summary["clients"].items()
               if c["reason_codes"]}
    assert refused == {"pub5-deny1": {"0x87": 1}, "pub5-deny2": {"0x87": 1}}
    totals = {row["qos"]: row for row in summary["per_qos"]}
    assert totals[1]["refused"] == totals[2]["refused"] == 1
    assert all(row["unanswered"] == 0 and row["not_sent"] == 0 for row in totals.values())
    assert sum(row["sent"] for row in totals.values()) == len(plan.messages)


def test_replay_keeps_the_scaled_timing_and_the_order(tmp_path: Path) -> None:
    plan = load_plan(CAPTURES / "mosquitto-v311-qos012.pcap")
    span = plan.messages[-1].ts_ns - plan.messages[0].ts_ns
    speed = max(1.0, span / (0.8 * NS))            # the whole replay within about a second
    tap: list[Event] = []
    with _broker(tap) as broker:
        summary = asyncio.run(replay(plan, "127.0.0.1", broker.port, speed=speed))
    got = _received(tap)
    assert [e.packet.payload for _c, e in got] == [m.publish.payload for m in plan.messages]
    assert all(cid.startswith("replay-") for cid, _e in got)
    first = got[0][1].ts_ns
    for (_c, e), m in zip(got, plan.messages, strict=True):
        planned = (m.ts_ns - plan.messages[0].ts_ns) / speed
        assert e.ts_ns - first >= planned - 5_000_000       # never early (5 ms of slack)
    assert summary["speed"] == speed and not summary["interrupted"]


def test_replay_cli(tmp_path: Path) -> None:
    tap: list[Event] = []
    runner = CliRunner()
    with _broker(tap) as broker:
        result = runner.invoke(main, [
            "replay", str(CAPTURES / "mosquitto-v311-qos012.pcap"), "--broker",
            f"127.0.0.1:{broker.port}", "--speed", "0", "--topic", "#", "--format", "json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert summary["messages"] == len(_received(tap)) > 0
        table = runner.invoke(main, [
            "replay", str(CAPTURES / "mosquitto-v311-qos012.pcap"), "--broker",
            f"127.0.0.1:{broker.port}", "--speed", "0", "--client", "nobody"])
        assert table.exit_code == 1 and "no PUBLISH from a client to replay" in table.output
    not_capture = tmp_path / "x.pcap"
    not_capture.write_bytes(b"this is not a capture at all")
    for args, message in (
            ([str(not_capture), "--broker", "127.0.0.1:1883"], str(not_capture)),
            ([str(CAPTURES / "mosquitto-v311-qos012.pcap"), "--broker", "10.0.0.1:1883"],
             "only local brokers"),
            ([str(CAPTURES / "mosquitto-v311-qos012.pcap"), "--broker", "127.0.0.1:1"],
             "could not connect"),
            ([str(CAPTURES / "mosquitto-v311-qos012.pcap"), "--broker", "127.0.0.1:1883",
              "--topic", "a/#/b"], "a/#/b")):
        result = runner.invoke(main, ["replay", *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["mosquitto-websocket.pcap", "paho-v311-v5.pcap"])
def test_plans_of_other_shipped_captures(name: str) -> None:
    plan = load_plan(CAPTURES / name, ports=(1883, 8080, 9001))
    assert plan.messages and all(m.client in plan.clients for m in plan.messages)

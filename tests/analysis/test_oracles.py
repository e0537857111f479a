"""The analysis of the public captures agrees with Suricata's expected output (its oracles).

Suricata logs one ``mqtt`` record per transaction: a PUBLISH with its acknowledgements, a
CONNECT with its CONNACK, a SUBSCRIBE with its SUBACK. Each ``filter`` of a suricata-verify
``test.yaml`` counts the records matching some fields; here every filter about MQTT records or
MQTT anomalies is translated into the same count over our tables (exchanges for PUBLISH and
its acks, connections for CONNECT/CONNACK, packets for the rest) and the counts must be equal.
Filters about rule alerts or Suricata's frame engine say nothing about MQTT and are skipped,
except alerts of a rule named for a CONNACK reason code.

Suricata's anomaly names map to ours: ``unintroduced_message`` is any packet before the
CONNECT (``n_before_connect``) or a PUBLISH before the CONNACK (``publish_before_connack``);
``invalid_qos_level`` is ``invalid_qos``; ``unassigned_msg_type`` is ``unassigned_msgtype``;
``malformed_traffic`` is ``malformed``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from qosinspect.analysis.api import Analysis, analyze_capture
from qosinspect.testing.tools import SHARED_CAPTURES, shared_captures

_ACKS = ("puback", "pubrec", "pubrel", "pubcomp")
_PACKET_SECTIONS = {"subscribe": "SUBSCRIBE", "suback": "SUBACK", "unsubscribe": "UNSUBSCRIBE",
                    "unsuback": "UNSUBACK", "disconnect": "DISCONNECT", "pingreq": "PINGREQ",
                    "pingresp": "PINGRESP"}
_ANOMALIES = {"invalid_qos_level": "invalid_qos", "unassigned_msg_type": "unassigned_msgtype",
              "malformed_traffic": "malformed"}


def _cases() -> list[tuple[str, Path]]:
    sources = SHARED_CAPTURES / "SOURCES.json"
    if not sources.exists():
        return []
    out = []
    for name, meta in sorted(json.loads(sources.read_text()).items()):
        if meta.get("repo") != "OISF/suricata-verify":
            continue
        oracle = SHARED_CAPTURES / "oracles" / "suricata-verify" / meta["path"].split("/")[1]
        if (oracle / "test.yaml").exists():
            out.append((name, oracle / "test.yaml"))
    return out


def _count(a: Analysis, match: dict[str, Any]) -> int | None:
    """How many of our records match a Suricata filter; None if it is not about MQTT."""
    if match.get("event_type") == "anomaly":
        event = match.get("anomaly.event")
        kinds = a.anomalies["kind"].astype(str)
        if event == "unintroduced_message":
            return int(a.connections["n_before_connect"].sum()
                       + (kinds == "publish_before_connack").sum())
        if event in _ANOMALIES:
            return int((kinds == _ANOMALIES[event]).sum())
        return None
    sig = re.fullmatch(r"MQTT CONNACK reason code (\d+)", str(match.get("alert.signature")))
    if match.get("event_type") == "alert" and sig:
        # A rule whose name says what it matches: CONNACKs with that code.
        return int((a.connections["connack_code"] == int(sig.group(1))).sum())
    if match.get("event_type") != "mqtt":
        return None
    fields = {k.split(".", 2)[1]: {} for k in match if k.startswith("mqtt.")}
    for k, v in match.items():
        if k.startswith("mqtt."):
            _, section, name = k.split(".", 2)
            fields[section][name] = v
    if "has-key" in match:
        fields.setdefault(str(match["has-key"]).split(".")[1], {})
    counts = [_section_count(a, section, f) for section, f in fields.items()]
    return min(counts) if counts else None


def _section_count(a: Analysis, section: str, f: dict[str, Any]) -> int:
    if section == "publish" or section in _ACKS:
        ex = a.exchanges
        sel = pd.Series(True, index=ex.index)
        if section == "publish":
            for name, col in (("qos", "qos"), ("dup", "dup_first"), ("retain", "retain"),
                              ("topic", "topic")):
                if name in f:
                    sel &= ex[col].astype(object) == f[name]
            if "message" in f:
                sel &= ex["payload_len"] == len(str(f["message"]).encode())
        else:
            sel &= ex[f"n_{section}"] > 0
            if "reason_code" in f:
                sel &= ex[f"{section}_reason"] == f["reason_code"]
        if "message_id" in f:
            sel &= ex["packet_id"] == f["message_id"]
        return int(sel.sum())
    if section in ("connect", "connack"):
        c = a.connections
        sel = c["t_connect" if section == "connect" else "t_connack"].notna()
        pairs = {"client_id": "client_id", "protocol_version": "version",
                 "username": "username", "return_code": "connack_code",
                 "session_present": "session_present"}
        for name, col in pairs.items():
            if name in f:
                sel &= c[col].astype(object) == f[name]
        if "flags.clean_session" in f:
            sel &= c["clean_start"] == f["flags.clean_session"]
        return int(sel.sum())
    if section in _PACKET_SECTIONS:
        p = a.packets
        sel = p["packet_type"] == _PACKET_SECTIONS[section]
        if "message_id" in f:
            sel &= p["packet_id"] == f["message_id"]
        return int(sel.sum())
    raise AssertionError(f"an oracle section this test does not know: {section}")


@pytest.mark.parametrize("name,oracle", _cases(), ids=[c[0] for c in _cases()])
def test_agrees_with_suricata(name: str, oracle: Path) -> None:
    a = analyze_capture(shared_captures() / name)
    checks = yaml.safe_load(oracle.read_text())["checks"]
    compared = 0
    for check in checks:
        flt = check.get("filter")
        if not flt:
            continue
        ours = _count(a, flt["match"])
        if ours is None:
            continue
        compared += 1
        assert ours == flt["count"], f"{name}: {flt['match']} -> ours {ours}, Suricata's " \
                                     f"{flt['count']}"
    ex = a.exchanges
    finished = ex[(ex["qos"] > 0) & ((ex["n_puback"] > 0) | (ex["n_pubcomp"] > 0))]
    assert set(finished["outcome"].astype(str)) <= {"complete", "refused"}, name
    assert compared or name.endswith("frames-truncated.pcap"), f"{name}: nothing compared"


def test_the_oracles_cover_every_transaction_kind() -> None:
    """The comparison above really ran: QoS 1 and QoS 2 exchanges, acks and anomalies."""
    if not _cases():
        shared_captures()
    seen: set[str] = set()
    for _, oracle in _cases():
        for check in yaml.safe_load(oracle.read_text())["checks"]:
            for key in check.get("filter", {}).get("match", {}):
                seen.add(key.split(".")[1] if key.startswith("mqtt.") else key)
    assert {"publish", "puback", "pubrec", "pubrel", "pubcomp", "connect", "connack",
            "anomaly.event"} <= seen


def test_exchange_counts_and_outcomes_of_the_qos_captures() -> None:
    """Spelled out for the QoS captures: one exchange each, complete, with every step."""
    root = shared_captures()
    for version in ("mqtt31", "mqtt311", "mqtt5"):
        for qos in (1, 2):
            a = analyze_capture(root / f"suricata-verify__{version}-pub-qos{qos}.pcap")
            (row,) = a.exchanges.itertuples()
            assert (row.qos, row.direction, row.packet_id, row.outcome) == (
                qos, "c2b", 1, "complete")
            steps = (row.n_puback,) if qos == 1 else (row.n_pubrec, row.n_pubrel,
                                                      row.n_pubcomp)
            assert set(steps) == {1}

#!/usr/bin/env python3
"""Derive MQTT test vectors from real captures, with Wireshark's dissector (tshark) as the oracle.

    # from captures/ and ../shared/captures/:
    .venv/bin/python tests/vectors/make_peer_vectors.py
    # verify the JSON files are up to date:
    .venv/bin/python tests/vectors/make_peer_vectors.py --check

For every capture in captures/ (described by captures/captures.json) it writes
tests/vectors/peers/<capture-stem>.json; for every pcap in ../shared/captures/ (suricata-verify)
it writes tests/vectors/shared/<capture-stem>.json. Each file is a list of vectors, one per distinct
MQTT control packet (identical hex + version only once, first occurrence kept):

    {"name": "<stem>#frame<N>#<i>",            # i = index of the MQTT PDU among those tshark
                                               #     shows in frame N (several can share a frame)
     "source": "captures/<file> frame N (<sender> -> <receiver>)",
     "frame": N, "pdu_index": i, "tcp_stream": S,
     "version": 3 | 4 | 5 | null,              # protocol level from the CONNECT of the TCP stream
     "direction": "c2b" | "b2c",               # c2b = sent to the broker port
     "hex": "...",                             # the exact bytes of the MQTT PDU (fixed header +
                                               # remaining length), from tshark's mqtt_raw
     "tshark_malformed": bool,                 # _ws.malformed in the frame or an error-level
                                               # expert item inside this PDU
     "tshark_expert": [messages] | absent,
     "tshark": {...}}                          # the fields below, None when tshark has none

A capture marked "tls" in captures.json is decrypted by tshark with its "keylog" file.

How the bytes are obtained: `tshark -r F -Y mqtt -T json --no-duplicate-keys -x` gives, for
each MQTT PDU dissected in a frame, an `mqtt_raw` entry [hex, offset, length, mask, type]. tshark
computes it from the data source the PDU was dissected from: the frame for ordinary PDUs, the
"Reassembled TCP" buffer when one PDU spans several segments, the "Unmasked data" buffer for
MQTT inside masked WebSocket frames. When several PDUs share a segment, --no-duplicate-keys
turns `mqtt`/`mqtt_raw` into lists in PDU order. A PDU is reported in the frame where tshark
finishes reassembling it.

Mapping from tshark fields to the "tshark" object (values converted from tshark's strings):

    type              mqtt.msgtype, as a name (CONNECT ... AUTH; RESERVED0/RESERVED15)
    msgtype           mqtt.msgtype (int)
    flags             low nibble of mqtt.hdrflags (int)
    length            mqtt.len (remaining length)
    qos, dup, retain  mqtt.qos, mqtt.dupflag, mqtt.retain. NB: tshark also decodes the fixed
                      header flags 0b0010 of PUBREL/SUBSCRIBE/UNSUBSCRIBE as qos=1 for MQTT 3.x
                      (Suricata does the same); only PUBLISH really has a QoS.
    packet_id         mqtt.msgid
    topic             mqtt.topic of a PUBLISH. For a PUBLISH with an empty topic and a Topic
                      Alias, tshark shows the topic it resolved from the alias as a generated
                      field; then topic_generated is True and topic_length is 0.
    topic_length      mqtt.topic_len of a PUBLISH
    payload_hex       mqtt.msg (raw bytes, hex) of a PUBLISH; None when tshark shows no payload
    protocol_name     mqtt.protoname          protocol_level  mqtt.ver
    client_id         mqtt.clientid           username        mqtt.username
    password_hex      mqtt.passwd (raw bytes, hex)
    keep_alive        mqtt.kalive             connect_flags   mqtt.conflags (int)
    clean             mqtt.conflag.cleansess (clean session / clean start)
    will_flag, will_qos, will_retain   mqtt.conflag.willflag / .qos / .retain
    will_topic        mqtt.willtopic          will_payload_hex  mqtt.willmsg (raw, hex)
    session_present   mqtt.conack.flags.sp
    reason_code       CONNACK: mqtt.conack.val (3.x return code) or mqtt.connack.reason_code (v5);
                      mqtt.puback/pubrec/pubrel/pubcomp/disconnect/auth.reason_code
    reason_codes      SUBACK: mqtt.suback.qos (3.x) / mqtt.suback.reason_code (v5);
                      UNSUBACK: mqtt.unsuback.reason_code (v5)
    topics            SUBSCRIBE: [{"topic": mqtt.topic, "qos": mqtt.sub.qos (3.x) or
                      mqtt.subscription_options_qos (v5), "options": int or None,
                      "no_local", "retain_as_published", "retain_handling" (v5: mqtt.
                      subscription_options_nl/_rap/_retain)}]; UNSUBSCRIBE: [{"topic": ...}]
    properties        mqtt.properties, will_properties: mqtt.will_properties; see below
    property_ids      the ids (mqtt.property_id) in wire order; will_property_ids likewise

Properties: tshark names the values of most properties generically (mqtt.prop_number,
mqtt.prop_string, mqtt.prop_key/mqtt.prop_value) and a few specifically
(mqtt.property.topic_alias, mqtt.property.content_type, ...). With --no-duplicate-keys the
association between an id and its value would be lost, so the fields are put back in wire order
with the offsets of their _raw entries and each value is attached to the mqtt.property_id before
it. The dict key is the MQTT 5 property name for the id (PROPERTY_NAMES below); user properties
are a list of [key, value]; a property that occurs more than once becomes a list; correlation
data and authentication data (binary) are given as hex of their raw bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
SHARED = ROOT.parent / "shared" / "captures"
OUT_PEERS = Path(__file__).resolve().parent / "peers"
OUT_SHARED = Path(__file__).resolve().parent / "shared"
WS_LUA = CAPTURES / "scripts" / "ws_mqtt.lua"
BROKER = "mosquitto 2.0.11"

MSG_TYPES = {0: "RESERVED0", 1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
             6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
             11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

PROPERTY_NAMES = {
    0x01: "payload_format_indicator", 0x02: "message_expiry_interval", 0x03: "content_type",
    0x08: "response_topic", 0x09: "correlation_data", 0x0B: "subscription_identifier",
    0x11: "session_expiry_interval", 0x12: "assigned_client_identifier",
    0x13: "server_keep_alive", 0x15: "authentication_method", 0x16: "authentication_data",
    0x17: "request_problem_information", 0x18: "will_delay_interval",
    0x19: "request_response_information", 0x1A: "response_information",
    0x1C: "server_reference", 0x1F: "reason_string", 0x21: "receive_maximum",
    0x22: "topic_alias_maximum", 0x23: "topic_alias", 0x24: "maximum_qos",
    0x25: "retain_available", 0x26: "user_property", 0x27: "maximum_packet_size",
    0x28: "wildcard_subscription_available", 0x29: "subscription_identifier_available",
    0x2A: "shared_subscription_available",
}
BINARY_PROPERTIES = {0x09, 0x16}
LENGTH_FIELDS = {"mqtt.prop_key_len", "mqtt.prop_value_len", "mqtt.prop_string_len"}
EXPERT_ERROR = 0x800000  # _ws.expert.severity of PI_ERROR

# Who the clients are, per capture (for the "source" text).
CLIENT_SOFTWARE = {
    "mosquitto-v311-qos012": "mosquitto_sub/mosquitto_pub 2.0.11",
    "mosquitto-v31-qos012": "mosquitto_sub/mosquitto_pub 2.0.11",
    "mosquitto-v5-props": "mosquitto_sub/mosquitto_pub 2.0.11",
    "mosquitto-nonstandard-port": "mosquitto_sub/mosquitto_pub 2.0.11",
    "paho-v311-v5": "paho-mqtt 2.x",
    "mosquitto-websocket": "paho-mqtt 2.x over WebSocket",
    "mosquitto-redelivery": "captures/scripts/redelivery.py (raw socket)",
    "mosquitto-tls": "paho-mqtt 2.x over TLS",
}


# ----------------------------------------------------------------------------------- tshark
def tshark_json(pcap: Path, decode_args: list[str]) -> list[dict]:
    cmd = ["tshark", "-r", str(pcap), *decode_args, "-Y", "mqtt", "-T", "json",
           "--no-duplicate-keys", "-x"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if res.returncode != 0:
        raise SystemExit(f"tshark failed on {pcap}: {res.stderr.strip()}")
    return json.loads(res.stdout) if res.stdout.strip() else []


def decode_args_for(entry: dict | None) -> list[str]:
    """tshark options that make it find MQTT in a capture described by captures.json."""
    if entry is None:
        return []
    args: list[str] = []
    for port in entry["ports"]:
        if entry.get("tls"):
            # TLS with the session secrets shipped beside the capture: tshark decrypts, the
            # vectors are the MQTT bytes inside (qosinspect itself reports such streams as
            # encrypted and decodes nothing).
            args += ["-o", f"tls.keylog_file:{CAPTURES / entry['keylog']}",
                     "-d", f"tcp.port=={port},tls", "-d", f"tls.port=={port},mqtt"]
        elif entry.get("websocket"):
            # HTTP Upgrade on a non-standard port, then WebSocket -> MQTT via the Lua helper.
            args += ["-X", f"lua_script:{WS_LUA}", "-d", f"tcp.port=={port},http"]
        elif port != 1883:
            args += ["-d", f"tcp.port=={port},mqtt"]
    return args


def as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def raw_list(x):
    """A *_raw value: one [hex, off, len, mask, type] or a list of them."""
    if x is None:
        return []
    return x if x and isinstance(x[0], list) else [x]


def to_int(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [to_int(i) for i in v]
    s = str(v)
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def to_bool(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [to_bool(i) for i in v]
    return str(v).lower() in ("1", "true")


def single(v):
    """tshark value that should occur once (first one if it occurs several times)."""
    if isinstance(v, list):
        return v[0] if v else None
    return v


# ------------------------------------------------------------------------------- properties
def flatten_with_offsets(tree: dict) -> list[tuple[int, int, str, object, str | None]]:
    """(offset, order, field, value, rawhex) for every leaf field of a properties subtree."""
    out = []
    order = 0

    def walk(d: dict):
        nonlocal order
        for k, v in d.items():
            if k.endswith("_raw") or k == "mqtt.property_len":
                continue
            if isinstance(v, dict):
                walk(v)
                continue
            raws = raw_list(d.get(k + "_raw"))
            vals = as_list(v)
            for i, val in enumerate(vals):
                if isinstance(val, dict):
                    walk(val)
                    continue
                raw = raws[i] if i < len(raws) else None
                off = raw[1] if raw else 1 << 30
                out.append((off, order, k, val, raw[0] if raw else None))
                order += 1

    walk(tree)
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def parse_properties(tree: dict | None):
    if not tree:
        return None, None
    props: dict[str, object] = {}
    ids: list[int] = []
    cur: list | None = None  # [id, [(field, value, rawhex), ...]]
    groups = []
    for _, _, field, value, rawhex in flatten_with_offsets(tree):
        if field == "mqtt.property_id":
            cur = [to_int(value), []]
            groups.append(cur)
        elif field in LENGTH_FIELDS or cur is None:
            continue
        else:
            cur[1].append((field, value, rawhex))
    for pid, vals in groups:
        ids.append(pid)
        name = PROPERTY_NAMES.get(pid, f"property_0x{pid:02x}")
        if pid == 0x26:
            d = {f: v for f, v, _ in vals}
            props.setdefault(name, []).append([d.get("mqtt.prop_key"), d.get("mqtt.prop_value")])
            continue
        if not vals:
            value = None
        elif pid in BINARY_PROPERTIES:
            rawhex = vals[-1][2]
            # e.g. mqtt.prop_string raw = the bytes only; specific fields may include the length
            value = rawhex
        else:
            field, v, _ = vals[-1]
            try:
                value = to_int(v)
            except (TypeError, ValueError):
                value = v
        if name in props:
            prev = props[name]
            props[name] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            props[name] = value
    return props, ids


# ---------------------------------------------------------------------------------- one PDU
def subscription_topics(m: dict, msgtype: int):
    topics = as_list(m.get("mqtt.topic"))
    if not topics:
        return None
    out = []
    if msgtype == 10:
        return [{"topic": t} for t in topics]
    v3qos = as_list(m.get("mqtt.sub.qos"))
    opts = as_list(m.get("mqtt.subscription_options"))
    trees = as_list(m.get("mqtt.subscription_options_tree"))
    for i, t in enumerate(topics):
        item: dict[str, object] = {"topic": t, "qos": None, "options": None}
        if i < len(v3qos):
            item["qos"] = to_int(v3qos[i])
        if i < len(opts):
            item["options"] = to_int(opts[i])
        if i < len(trees):
            tr = trees[i]
            item["qos"] = to_int(tr.get("mqtt.subscription_options_qos"))
            item["no_local"] = to_bool(tr.get("mqtt.subscription_options_nl"))
            item["retain_as_published"] = to_bool(tr.get("mqtt.subscription_options_rap"))
            item["retain_handling"] = to_int(tr.get("mqtt.subscription_options_retain"))
        out.append(item)
    return out


def rawhex(m: dict, key: str):
    r = raw_list(m.get(key + "_raw"))
    return r[0][0] if r else None


def expert_items(m: dict) -> list[tuple[str, int]]:
    items = []

    def walk(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k == "_ws.expert":
                    for e in as_list(v):
                        items.append((e.get("_ws.expert.message"),
                                      to_int(e.get("_ws.expert.severity") or 0)))
                elif not k.endswith("_raw"):
                    walk(v)
        elif isinstance(d, list):
            for x in d:
                walk(x)

    walk(m)
    return items


def decode_pdu(m: dict) -> dict:
    hdr = m.get("mqtt.hdrflags_tree", {})
    msgtype = to_int(hdr.get("mqtt.msgtype"))
    is_pub = msgtype == 3
    cf = m.get("mqtt.conflags_tree", {})
    ca = m.get("mqtt.conack.flags_tree", {})
    reason = None
    for key in ("mqtt.conack.val", "mqtt.connack.reason_code", "mqtt.puback.reason_code",
                "mqtt.pubrec.reason_code", "mqtt.pubrel.reason_code", "mqtt.pubcomp.reason_code",
                "mqtt.disconnect.reason_code", "mqtt.auth.reason_code", "mqtt.reason_code"):
        if key in m:
            reason = to_int(single(m[key]))
            break
    reason_codes = None
    for key in ("mqtt.suback.qos", "mqtt.suback.reason_code", "mqtt.unsuback.reason_code"):
        if key in m:
            reason_codes = (reason_codes or []) + [to_int(x) for x in as_list(m[key])]
    props, prop_ids = parse_properties(m.get("mqtt.properties"))
    wprops, wprop_ids = parse_properties(m.get("mqtt.will_properties"))
    topic = single(m.get("mqtt.topic")) if is_pub else None
    return {
        "type": MSG_TYPES.get(msgtype, str(msgtype)),
        "msgtype": msgtype,
        "flags": (to_int(m.get("mqtt.hdrflags")) or 0) & 0x0F,
        "length": to_int(m.get("mqtt.len")),
        "qos": to_int(hdr.get("mqtt.qos")),
        "dup": to_bool(hdr.get("mqtt.dupflag")),
        "retain": to_bool(hdr.get("mqtt.retain")),
        "packet_id": to_int(single(m.get("mqtt.msgid"))),
        "topic": topic,
        "topic_length": to_int(single(m.get("mqtt.topic_len"))) if is_pub else None,
        "topic_generated": (topic is not None and "mqtt.topic_raw" not in m) if is_pub else None,
        "payload_hex": rawhex(m, "mqtt.msg") if is_pub else None,
        "protocol_name": m.get("mqtt.protoname"),
        "protocol_level": to_int(m.get("mqtt.ver")),
        "client_id": m.get("mqtt.clientid"),
        "username": m.get("mqtt.username"),
        "password_hex": rawhex(m, "mqtt.passwd"),
        "keep_alive": to_int(m.get("mqtt.kalive")),
        "connect_flags": to_int(m.get("mqtt.conflags")),
        "clean": to_bool(cf.get("mqtt.conflag.cleansess")),
        "will_flag": to_bool(cf.get("mqtt.conflag.willflag")),
        "will_qos": to_int(cf.get("mqtt.conflag.qos")),
        "will_retain": to_bool(cf.get("mqtt.conflag.retain")),
        "will_topic": m.get("mqtt.willtopic"),
        "will_payload_hex": rawhex(m, "mqtt.willmsg"),
        "session_present": to_bool(ca.get("mqtt.conack.flags.sp")),
        "reason_code": reason,
        "reason_codes": reason_codes,
        "topics": subscription_topics(m, msgtype) if msgtype in (8, 10) else None,
        "properties": props,
        "property_ids": prop_ids,
        "will_properties": wprops,
        "will_property_ids": wprop_ids,
    }


def pdu_length_ok(hexstr: str) -> bool:
    """len(bytes) == 1 + len(remaining-length varint) + remaining length."""
    b = bytes.fromhex(hexstr)
    mult, rem, i = 1, 0, 1
    while i < len(b):
        rem += (b[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not b[i - 1] & 0x80:
            return len(b) == i + rem
        if i > 4:
            return False
    return False


# ------------------------------------------------------------------------------ one capture
def vectors_for(pcap: Path, rel: str, entry: dict | None, clients: str, broker: str) -> list[dict]:
    packets = tshark_json(pcap, decode_args_for(entry))
    broker_ports = set(entry["ports"]) if entry else set()
    rows = []
    for p in packets:
        layers = p["_source"]["layers"]
        tcp = layers.get("tcp", {})
        frame = to_int(layers["frame"]["frame.number"])
        mqtts = as_list(layers.get("mqtt"))
        raws = raw_list(layers.get("mqtt_raw"))
        if len(mqtts) != len(raws):
            raise SystemExit(f"{rel} frame {frame}: {len(mqtts)} mqtt layers "
                             f"but {len(raws)} mqtt_raw")
        malformed = "_ws.malformed" in layers
        for i, (m, raw) in enumerate(zip(mqtts, raws, strict=True)):
            rows.append({
                "frame": frame, "pdu_index": i, "stream": to_int(tcp.get("tcp.stream")),
                "src": to_int(tcp.get("tcp.srcport")), "dst": to_int(tcp.get("tcp.dstport")),
                "hex": raw[0], "m": m,
                # an exception ends dissection of the frame: it belongs to its last PDU
                "malformed_frame": malformed and i == len(mqtts) - 1,
            })
    # protocol level and broker port of each TCP stream, from its CONNECT
    level: dict[int, int] = {}
    client_ids: dict[int, str] = {}
    for r in rows:
        if to_int(r["m"].get("mqtt.hdrflags_tree", {}).get("mqtt.msgtype")) == 1:
            level.setdefault(r["stream"], to_int(r["m"].get("mqtt.ver")))
            client_ids.setdefault(r["stream"], r["m"].get("mqtt.clientid"))
            if not entry:
                broker_ports.add(r["dst"])
    if not broker_ports:
        broker_ports = {1883}
    vectors, seen = [], set()
    for r in rows:
        version = level.get(r["stream"])
        key = (r["hex"], version)
        if key in seen:
            continue
        seen.add(key)
        c2b = r["dst"] in broker_ports
        cid = client_ids.get(r["stream"])
        client = f"{clients}" + (f" '{cid}'" if cid else "")
        who = f"{client} -> {broker}" if c2b else f"{broker} -> {client}"
        experts = expert_items(r["m"])
        v = {
            "name": f"{pcap.stem}#frame{r['frame']}#{r['pdu_index']}",
            "source": f"{rel} frame {r['frame']} ({who})",
            "frame": r["frame"],
            "pdu_index": r["pdu_index"],
            "tcp_stream": r["stream"],
            "version": version,
            "direction": "c2b" if c2b else "b2c",
            "hex": r["hex"],
            "tshark_malformed": r["malformed_frame"]
            or any(sev >= EXPERT_ERROR for _, sev in experts),
        }
        if experts:
            v["tshark_expert"] = [msg for msg, _ in experts]
        v["tshark"] = decode_pdu(r["m"])
        if not pdu_length_ok(r["hex"]) or len(r["hex"]) // 2 < (v["tshark"]["length"] or 0) + 2:
            raise SystemExit(f"{v['name']}: hex length does not match the MQTT fixed header")
        vectors.append(v)
    return vectors


def dump(path: Path, vectors: list[dict], check: bool) -> bool:
    text = json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"
    if check:
        ok = path.exists() and path.read_text() == text
        if not ok:
            print(f"OUT OF DATE: {path}", file=sys.stderr)
        return ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the JSON files are current")
    args = ap.parse_args()
    ok = True
    index = json.loads((CAPTURES / "captures.json").read_text())
    for entry in index:
        pcap = CAPTURES / entry["file"]
        vecs = vectors_for(pcap, f"captures/{entry['file']}", entry,
                           CLIENT_SOFTWARE.get(pcap.stem, "client"), BROKER)
        ok &= dump(OUT_PEERS / f"{pcap.stem}.json", vecs, args.check)
        print(f"{pcap.name}: {len(vecs)} vectors")
    if not SHARED.is_dir():
        print(f"note: {SHARED} missing, shared vectors skipped", file=sys.stderr)
    else:
        for pcap in sorted(SHARED.glob("*.pcap")):
            vecs = vectors_for(pcap, f"../shared/captures/{pcap.name}", None,
                               "client", "broker")
            ok &= dump(OUT_SHARED / f"{pcap.stem}.json", vecs, args.check)
            bad = sum(v["tshark_malformed"] for v in vecs)
            note = f" ({bad} tshark_malformed)" if bad else ""
            print(f"{pcap.name}: {len(vecs)} vectors{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

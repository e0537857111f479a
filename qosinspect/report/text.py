"""Text renderings of an analysis: the per-QoS report, tables, and the ladder (sequence) diagram.

Functions from data to strings, so the CLI, a notebook and a test all get the same text; the
only writer is :func:`write_report`, through the output layer (:mod:`.output`). Three report
formats: ``table`` (aligned columns for a terminal), ``markdown`` (GitHub tables) and ``json``
(the report dict, stable keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..analysis.api import Analysis
from ..analysis.tcp_evidence import MAX_CONNECTIONS as EVIDENCE_LISTED
from . import output
from .diagnoses import diagnoses_lines, ladder_markers, name_ladders, wire_rows
from .output import document_text, format_cell, format_table, format_time

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SHOWN", "clear_text_lines", "client_connections", "first_anomalies", "format_report",
           "ladder_lines", "refusal_rows", "undecoded_rows", "write_report"]

_ARROW = 46


def format_report(analysis: Analysis, fmt: str = "table", capture: str = "CAPTURE",
                  data: dict[str, Any] | None = None) -> str:
    """The report of ``qosinspect report`` in ``table``, ``markdown`` or ``json`` (without a
    final newline); ``data``: ``analysis.report()`` when the caller has it already. Commands
    write it with :func:`qosinspect.report.output.write_document`."""
    if data is None:
        data = analysis.report()
    name_ladders(data, capture)
    if fmt == "json":
        return document_text(data, "json").rstrip("\n")
    md = fmt == "markdown"

    def h(title: str) -> str:
        return f"## {title}" if md else f"{title}\n{'=' * len(title)}"

    cap = data["capture"]
    out: list[str] = []
    title = f"qosinspect report: {cap.get('source', 'events')}"
    out.append(f"# {title}" if md else title)
    facts = []
    if "frames" in cap:
        facts.append(f"{cap['frames']:,} frames, {cap['mqtt_packets']:,} MQTT packets")
    facts.append(f"{data['connections']} connections, {data['sessions']} sessions")
    if len(data["brokers"]) > 1:
        facts.append(f"{len(data['brokers'])} brokers")
    if cap["duration_s"] is not None:
        facts.append(f"{cap['duration_s']:.3f} s from {format_time(cap['t_first_ns'])}")
    out.append(", ".join(facts))
    if "error" in cap:
        out.append(f"WARNING: the capture could not be read to the end: {cap['error']}")
    if data["notes"].get("encrypted"):
        out.append(f"NOTE: {data['notes']['encrypted']} connection(s) encrypted (TLS): no MQTT "
                   "decoded there; --engine tshark --tls-keylog FILE decrypts them")
    if cap.get("frames") and not data["connections"]:
        # all zeros below would read as "nothing went wrong": say where MQTT was looked for
        out.append("NOTE: no MQTT connection in this capture: MQTT is looked for on port 1883, "
                   "on the ports given with --port, and on any port whose stream starts with "
                   "a CONNECT or an MQTT WebSocket upgrade; a capture that starts after the "
                   "CONNECT on another port needs --port N (MQTT over TLS too)")
    out.append("")
    out.append(h("Per QoS level"))
    headers = ["QoS", "publishes", "completed", "incomplete", "retrans", "DUP",
               "dup delivered", "not delivered", "p50 ms", "p90 ms", "p99 ms", "max ms"]

    def qos_rows(per_qos: list[dict[str, Any]]) -> list[list[Any]]:
        return [[r["qos"], r["publishes"], r["completed"], r["incomplete"],
                 r["retransmissions"], r["dup_flagged"], r["duplicates_delivered"],
                 r["not_delivered"], r["latency_ms"]["p50"], r["latency_ms"]["p90"],
                 r["latency_ms"]["p99"], r["latency_ms"]["max"]] for r in per_qos]

    out.append(format_table(headers, qos_rows(data["per_qos"]), fmt))
    out.append("")
    if len(data["brokers"]) > 1:
        # Sessions, reconnections and deliveries are matched within one broker: each its own.
        for b in data["brokers"]:
            out.append(f"broker {_endpoint(b)}: {b['connections']} connections "
                       f"(--broker {_endpoint(b)} for this broker alone)")
            out.append(format_table(headers, qos_rows(b["per_qos"]), fmt))
            out.append("")
    out.append("publishes count exchanges (a re-sent PUBLISH is not a new one); retrans: "
               "MQTT-level re-sends (PUBLISH, PUBREC, PUBREL); DUP: PUBLISH packets with DUP=1; "
               "latency: first PUBLISH to final ack of completed exchanges.")
    out.append("")
    out.append(h("Latency per step (ms)"))
    step_rows = []
    names = {"puback": "PUBLISH -> PUBACK", "pubrec": "PUBLISH -> PUBREC",
             "pubrel": "PUBREC -> PUBREL", "pubcomp": "PUBREL -> PUBCOMP"}
    for r in data["per_qos"]:
        for step, p in r["latency_ms_by_step"].items():
            step_rows.append([f"QoS {r['qos']}", names[step], p["p50"], p["p90"], p["p99"],
                              p["max"]])
    step_rows += wire_rows(data.get("time_on_wire_ms", []))
    out.append(format_table(["QoS", "step", "p50", "p90", "p99", "max"], step_rows, fmt,
                            "llrrrr"))
    pct = data["percentiles"]
    if pct["sketched"]:
        out.append(f"percentiles of {', '.join(pct['sketched'])} from a DDSketch (relative "
                   f"error {pct['relative_error']:.0%}): more than {pct['exact_up_to']:,} values "
                   "each; counts and max exact")
    out.append("")
    out.append(h("Outcomes"))
    q2 = data["qos2_incomplete"]
    orows = [[r["qos"], r["completed"] - r["complete_after_reconnect"],
              r["complete_after_reconnect"], r["at_end_of_capture"], r["abandoned"],
              r["evicted"], r["refused"], r["protocol_error"]] for r in data["per_qos"][1:]]
    out.append(format_table(["QoS", "complete", "after reconnect", "open at end",
                             "abandoned", "evicted", "refused", "protocol error"], orows, fmt))
    out.append(f"QoS 2 incomplete by last step: no response {q2['no_response']}, "
               f"after PUBREC {q2['after_pubrec']}, after PUBREL {q2['after_pubrel']}")
    out.append(f"  details: qosinspect flows {capture} --outcome incomplete "
               "(or abandoned, refused, protocol_error, complete_after_reconnect)")
    out.append("")
    out.append(h("Connections and reconnections"))
    ends = ", ".join(f"{k} {v}" for k, v in data["connection_ends"].items()) or "none"
    refused, attempts = data["refused_connections"], data["tcp_attempts_refused"]
    out.append(f"connections: {data['connections']} ({refused} refused by CONNACK), {attempts} "
               f"attempt{'' if attempts == 1 else 's'} refused by TCP (ended by: {ends})")
    if refused or attempts:
        out.append(format_table(["conn", "client", "broker", "refused"],
                                refusal_rows(analysis, SHOWN), fmt, "rlll"))
        if refused + attempts > SHOWN:
            out.append(f"... and {refused + attempts - SHOWN} more")
        out.append(f"  details: qosinspect export {capture} -o DIR (connections: connack_code, "
                   "attempt)")
    red = data["redelivered"]
    gap = data["reconnect_gap_ms"]
    if data["reconnects"]:
        out.append(f"reconnections: {data['reconnects']}, gap p50 {format_cell(gap['p50'])} ms, "
                   f"max {format_cell(gap['max'])} ms; redelivered on the new connection: "
                   f"{red['publish']} PUBLISH (DUP), {red['pubrel']} PUBREL; "
                   f"resumed {red['resumed']}, abandoned {red['abandoned']}")
        out.append("")
        out.append(format_table(
            ["client", "from conn", "to conn", "cause", "gap ms", "session present",
             "left open", "redelivered PUBLISH", "redelivered PUBREL", "resumed", "abandoned"],
            _reconnect_rows(analysis, SHOWN), fmt))
        if data["reconnects"] > SHOWN:
            out.append(f"... and {data['reconnects'] - SHOWN} more")
    else:
        out.append("reconnections: 0")
    out.append(f"  details: qosinspect ladder {capture} --client ID; "
               f"qosinspect export {capture} -o DIR (connections, reconnects)")
    out.append("")
    out.append(h("TCP"))
    out.append(f"TCP retransmissions: {data['tcp_retransmissions']} segments on "
               f"{data['tcp_retransmission_connections']} connections (bytes the capture "
               "already had; counted apart from MQTT re-sends); stream gaps: "
               f"{data['stream_gaps']}")
    out.append(f"  details: qosinspect export {capture} -o DIR (tcp_retransmissions)")
    for jump in data["clock_jumps"]:
        out.append(f"clock jump at frame {jump['frame']}: {jump['detail']}")
    undecoded = data["undecoded_streams"]
    out.append(f"TCP streams with data not decoded as MQTT: {undecoded}")
    if undecoded:
        out.append(format_table(["stream", "client", "server", "bytes", "why", "decode with"],
                                undecoded_rows(analysis, SHOWN), fmt, "rllrll"))
        out.append(f"  details: qosinspect export {capture} -o DIR (undecoded_streams)")
    ev = data["evictions"]
    if ev["exchanges"] or ev["connections"]:
        out.append(f"state caps: {ev['exchanges']} open exchanges and {ev['connections']} "
                   "connections were no longer followed (evicted, oldest first; see "
                   "docs/memory.md)")
    out.append("")
    evidence = data["tcp_evidence"]
    if any(evidence["total"].values()):
        out.append(h("TCP evidence"))
        out.extend(_evidence_lines(evidence, fmt, capture))
        out.append("")
    out.append(h("Diagnoses"))
    out.extend(diagnoses_lines(data.get("diagnoses", []), fmt, capture))
    out.append("")
    out.append(h("Clear text"))
    out.extend(clear_text_lines(data["clear_text"], capture))
    out.append("")
    out.append(h("Anomalies"))
    if data["anomalies"]:
        first = first_anomalies(analysis)
        rows = [[kind, n, *first.get(kind, (None, ""))]
                for kind, n in sorted(data["anomalies"].items())]
        out.append(format_table(["kind", "count", "first frame", "first detail"], rows, fmt,
                                "lrrl"))
    else:
        out.append("none")
    if data["notes"]:
        out.append("notes: " + ", ".join(f"{k} {v}" for k, v in data["notes"].items()))
    out.append(f"  details: qosinspect export {capture} -o DIR (anomalies)")
    return "\n".join(out)


#: Rows of each list (refusals, undecoded streams) the text and HTML reports show at most.
SHOWN = 10


def write_report(analysis: Analysis, fmt: str = "table", out: output.Target = None, *,
                 capture: str = "CAPTURE") -> None:
    """Write the report (:func:`format_report`) through the output layer, to ``out``
    (standard output by default): the command ``report`` and the reports of ``generate`` and
    ``demo``."""
    data = analysis.report()
    output.write_document(data, fmt, out,
                          render=lambda f: format_report(analysis, f, capture, data))


def _endpoint(broker: dict[str, Any]) -> str:
    from ..capture.brokers import BrokerSpec

    return str(BrokerSpec(broker["address"], broker["port"]))


def clear_text_lines(ct: dict[str, Any], capture: str) -> list[str]:
    """What an eavesdropper on the capture's links reads (never the passwords themselves)."""
    lines = [f"MQTT readable by anyone on the path: {ct['connections']} connections carried "
             f"MQTT in clear text ({ct['encrypted']} encrypted), {ct['mqtt_bytes']:,} MQTT "
             f"bytes, {ct['publish_packets']:,} PUBLISH (topics and payloads)"]
    if ct["with_username"] or ct["with_password"]:
        users = ", ".join(ct["usernames"][:SHOWN])
        if len(ct["usernames"]) > SHOWN:
            more = len(ct["usernames"]) - SHOWN
            users += (f", ... and more than {more:,} more" if ct.get("usernames_capped")
                      else f", ... and {more} more")
        risk = ("an eavesdropper can log in with them" if ct["password_accepted"] else
                "none seen accepted, but readable all the same")
        lines.append(f"credentials in clear text: a user name on {ct['with_username']} "
                     f"connections ({users or 'none'}), a password on {ct['with_password']}, "
                     f"accepted by the broker on {ct['password_accepted']}: {risk}; use TLS")
        lines.append(f"  details: qosinspect ladder {capture} --conn "
                     f"{ct['first_conn_with_password'] if ct['with_password'] else 'N'}; "
                     f"qosinspect export {capture} -o DIR (connections: transport, username, "
                     "password_present)")
    else:
        lines.append("credentials in clear text: none (no CONNECT with a user name or password "
                     "outside TLS)")
    lines.append("  what else an attacker could read or do (anonymous access, brute force, "
                 "wildcard reads, $SYS, keys and tokens in payloads, TLS): "
                 f"qosinspect audit {capture}")
    return lines


#: Column titles of the TCP evidence kinds (Wireshark's Expert Information wording).
_EVIDENCE_TITLES = {"lost_segment": "lost before capture", "duplicate_ack": "dup ACK",
                    "fast_retransmission": "fast retrans", "retransmission": "retrans",
                    "spurious_retransmission": "spurious retrans",
                    "out_of_order": "out of order", "ack_lost_segment": "ACKed unseen"}


def _evidence_lines(evidence: dict[str, Any], fmt: str, capture: str) -> list[str]:
    """Wireshark's TCP flags: the totals, then per connection and direction (the kinds seen
    in the capture as columns) with the first frames."""
    kinds = [k for k, n in evidence["total"].items() if n]
    lines = ["Wireshark's tcp.analysis flags: " + ", ".join(
        f"{_EVIDENCE_TITLES[k]} {evidence['total'][k]}" for k in kinds)]
    rows = []
    for e in evidence["connections"][:SHOWN]:
        frames = sorted({f for k in kinds for f in e["frames"].get(k, [])})[:5]
        rows.append([e["conn_id"], e["client"] or e["src"], e["broker"] or e["dst"],
                     e["transport"] or "", e["direction"] or f"{e['src']} -> {e['dst']}",
                     *(e["counts"].get(k, 0) for k in kinds),
                     ", ".join(map(str, frames))])
    lines.append(format_table(["conn", "client", "broker", "transport", "direction",
                               *(_EVIDENCE_TITLES[k] for k in kinds), "first frames"], rows,
                              fmt, "rllll" + "r" * len(kinds) + "l"))
    if len(evidence["connections"]) > SHOWN:
        lines.append(f"... and {len(evidence['connections']) - SHOWN} more")
    if evidence.get("unlisted"):
        lines.append(f"... and {evidence['unlisted']:,} flags on connections past the first "
                     f"{EVIDENCE_LISTED:,} with any (counted in the totals)")
    lines.append(f"  details: qosinspect export {capture} -o DIR (tcp_evidence)")
    return lines


def undecoded_rows(analysis: Analysis, limit: int) -> list[list[Any]]:
    """The largest undecoded streams, with the --port that would decode each."""
    from ..analysis.undecoded import UndecodedStreams

    top = UndecodedStreams(limit).consume(analysis.result.undecoded).top()
    return [[e.conn_id, str(e.client), str(e.server), e.data_bytes, e.reason,
             f"--port {e.port}"] for e in top]


def refusal_rows(analysis: Analysis, limit: int) -> list[list[Any]]:
    """Connections refused by CONNACK (with its code) and attempts refused by TCP: the first
    ``limit``, in ``conn_id`` order (kept as connections were folded,
    :mod:`~qosinspect.analysis.conntotals`)."""
    rows: list[list[Any]] = []
    for c in analysis.result.connection_totals().first_refusals(limit):
        if c.attempt:
            why = "by TCP: reset before any MQTT packet"
        else:
            why = f"by CONNACK: code {c.connack_code} (0x{c.connack_code:02x})"
        rows.append([c.conn_id, c.client, c.broker, why])
    return rows


def _reconnect_rows(analysis: Analysis, limit: int) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for x in analysis.result.reconnects[:limit]:
        sp = None if x.session_present is None else int(x.session_present)
        rows.append([x.client_id or x.session, x.prev_conn_id, x.next_conn_id, x.cause,
                     None if x.gap_ns is None else round(x.gap_ns / 1e6, 3), sp,
                     x.unfinished_c2b + x.unfinished_b2c, x.redelivered_publish,
                     x.redelivered_pubrel, x.resumed, x.abandoned])
    return rows


def first_anomalies(analysis: Analysis) -> dict[str, tuple[int, str]]:
    """The first frame and words of each anomaly kind (detail cut to 70 characters)."""
    first: dict[str, tuple[int, str]] = {}
    for a in analysis.result.anomalies:
        if a.kind not in first:
            text = a.detail if len(a.detail) <= 70 else a.detail[:67] + "..."
            first[a.kind] = (a.frame, text)
    return first


# -- ladder ----------------------------------------------------------------------------------


def _label(p: dict[str, Any], conn: Any) -> str:
    import pandas as pd

    t = str(p["packet_type"])
    pid = "" if pd.isna(p["packet_id"]) else f" id={p['packet_id']}"
    reason = p["reason_code"]
    rc = "" if pd.isna(reason) or reason == 0 else f" rc=0x{int(reason):02x}"
    if t == "PUBLISH":
        flags = ("  DUP" if p["dup"] else "") + ("  RETAIN" if p["retain"] else "")
        size = "" if pd.isna(p["payload_len"]) else f" ({p['payload_len']} B)"
        return f"PUBLISH q{p['qos']}{pid} {p['topic']}{size}{flags}"
    if t == "CONNECT" and conn is not None:
        clean = "?" if conn.clean_start is None else int(conn.clean_start)
        return f"CONNECT {conn.client_id!r} v{conn.version} clean={clean} ka={conn.keep_alive}"
    if t == "CONNACK" and conn is not None:
        sp = "?" if conn.session_present is None else int(conn.session_present)
        return f"CONNACK rc={conn.connack_code} sp={sp}"
    return f"{t}{pid}{rc}"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]


def _known_conns(conns: pd.DataFrame) -> str:
    """The connection numbers there are, for an error message. They are Wireshark's
    tcp.stream numbers, so they need not be contiguous (other TCP streams take numbers too)."""
    ids = sorted(int(i) for i in conns["conn_id"])
    if not ids:
        return "it has no MQTT connection"
    shown = ", ".join(str(i) for i in ids[:20]) + (", ..." if len(ids) > 20 else "")
    return f"connections: {shown}"


def client_connections(conns: pd.DataFrame, client: str) -> pd.DataFrame:
    """The rows of the connections table of ``client``: a client id as sent, or the session
    key (an assigned client id, conn:<N>). ``LookupError`` naming the clients when none."""
    if client == "":
        # An empty client id is no one client [MQTT-3.1.3-6]: each such connection is a session
        # of its own (conn:<N>), often to different brokers; one diagram would merge them.
        empty = sorted(str(x) for x in conns.loc[conns["client_id"] == "", "session"].dropna())
        raise LookupError("an empty client id names no one client: each connection without one "
                          "is a client of its own; give --client conn:N or --conn N "
                          f"({', '.join(empty) or 'no such connection in the capture'})")
    sel = conns[(conns["client_id"] == client) | (conns["session"] == client)]
    if sel.empty:
        known = ", ".join(sorted(str(c) for c in conns["session"].dropna().unique()))
        raise LookupError(f"no client {client!r} in the capture (clients: {known or 'none'})")
    return sel


def ladder_lines(analysis: Analysis, *, client: str | None = None, conn: int | None = None,
                 since_ns: int | None = None, until_ns: int | None = None,
                 limit: int = 10_000) -> list[str]:
    """A text sequence diagram (like Wireshark's flow graph) of the packets of one client's
    connections (``client``) or of one connection (``conn``), between ``since_ns`` and
    ``until_ns``. Re-sends are marked ``[resend]``, DUP flags shown, stream gaps and TCP
    retransmissions drawn as lines of their own, connection opens and ends as headers.
    Raises ``LookupError`` when the client or connection is not in the capture."""

    conns = analysis.connections
    if client is not None:
        sel = client_connections(conns, client)
    elif conn is not None:
        sel = conns[conns["conn_id"] == conn]
        if sel.empty:
            raise LookupError(f"no connection {conn} in the capture ({_known_conns(conns)})")
    else:
        raise LookupError("give a client id or a connection number")
    ids = set(int(i) for i in sel["conn_id"])
    recs = {c.conn_id: c for c in analysis.result.connections if c.conn_id in ids}
    items: list[tuple[int, int, str]] = []  # (ts_ns, order, line)
    pk = analysis.packets_of(ids)
    ts_all = [int(v) for v in pk["ts"].astype("int64")]
    labels = [(p, _label(p, recs.get(int(p["conn_id"]))) + ("  [resend]" if p["resend"] else ""))
              for p in _records(pk)]
    width = max([_ARROW] + [len(lab) + 10 for _, lab in labels])
    for (p, label), ts in zip(labels, ts_all, strict=True):
        if str(p["direction"]) == "c2b":
            arrow = "|-- " + (label + " ").ljust(width - 6, "-") + ">|"
        else:
            arrow = "|<-- " + (label + " ").ljust(width - 6, "-") + "|"
        items.append((ts, 1, f"{int(p['frame']):>7}  c{int(p['conn_id'])}  {arrow}"))
    an = analysis.anomalies
    for a in _records(an[an["conn_id"].isin(ids)]):
        d = a["direction"] if isinstance(a["direction"], str) else "-"
        items.append((int(a["ts"].value), 2, f"{int(a['frame']):>7}  c{int(a['conn_id'])}  "
                      f"~~ {a['kind']} ({d}): {a['detail']}"))
    tr = analysis.tcp_retransmissions
    for t in _records(tr[tr["conn_id"].isin(ids)]):
        items.append((int(t["ts"].value), 2, f"{int(t['frame']):>7}  c{int(t['conn_id'])}  "
                      f"~~ TCP retransmission {t['direction']}: {t['length']} bytes again"))
    for ts, text, cid in ladder_markers(analysis.result.diagnoses, ids):
        items.append((ts, 2, f"{'':>7}  c{cid}  {text}"))
    for c in recs.values():
        if c.t_open is not None:
            items.append((c.t_open, 0, f"{'':>7}  c{c.conn_id}  == connection {c.conn_id} "
                          f"opened: client {c.client} -> broker {c.broker} ({c.transport})"))
        if c.t_close is not None:
            how = c.end or "?"
            by = f" by {c.closed_by}" if c.closed_by else ""
            items.append((c.t_close, 3, f"{'':>7}  c{c.conn_id}  == connection {c.conn_id} "
                          f"ended: {how} (transport: {c.transport_end}{by})"))
    items.sort(key=lambda x: (x[0], x[1]))
    if since_ns is not None:
        items = [x for x in items if x[0] >= since_ns]
    if until_ns is not None:
        items = [x for x in items if x[0] <= until_ns]
    t0 = analysis.result.t_first or (items[0][0] if items else 0)
    name = client if client is not None else f"connection {conn}"
    head = [f"ladder of {name}: time in s since the capture start ({format_time(t0)})",
            f"{'time':>12}  {'frame':>7}  {'':3} {'client':<{width // 2}}{'broker':>{width // 2}}"]
    lines = [f"{(ts - t0) / 1e9:12.6f}  {line}" for ts, _, line in items[:limit]]
    if len(items) > limit:
        lines.append(f"... {len(items) - limit} more lines (narrow with --since/--until)")
    return head + lines

"""The correlation result as pandas DataFrames, each with a declared schema.

Every table's columns are declared once below (name, dtype kind, meaning); the builders follow
the declaration and ``docs/glossary.md`` lists the same declarations (a test keeps them equal).
Columns come straight from numpy arrays (the packed row stores are viewed, not parsed), never
through a temporary CSV. The large tables (exchanges, deliveries, packets, TCP retransmissions)
are built the same way from a block of rows (``rows=``, with a :class:`TableMaps` made once):
how :mod:`.spool` writes them a block at a time, with these very column rules. Dtypes:

- timestamps ``datetime64[ns, UTC]`` (``ts`` and ``t_*``), durations ``timedelta64[ns]``
  (``latency_*``, ``gap``, ``duration``); missing ones are NaT;
- counts ``int32``/``int64``; values that may be missing (packet ids, reason codes, QoS of a
  packet without one) are pandas nullable integers (``Int8``/``Int16``/``Int32``/``Int64``);
- small sets of names (direction, outcome, packet type, client id, topic) are ``category``;
  flags are ``bool``, or the nullable ``boolean`` where unknown is possible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from .correlate import CorrelationResult
from .metrics import conn_broker_codes, session_broker_codes
from .records import (
    DELIVERY_REASONS,
    DELIVERY_STATUSES,
    EXCHANGE_COLUMNS,
    NO_TS,
    OUTCOMES,
    PACKET_TYPE_NAMES,
    STEPS,
    RowStore,
)
from .tcp_evidence import SCHEMA as TCP_EVIDENCE_SCHEMA
from .undecoded import SCHEMA as UNDECODED_SCHEMA

__all__ = [
    "SCHEMAS",
    "Generations",
    "TableMaps",
    "anomalies_frame",
    "connections_frame",
    "deliveries_frame",
    "exchange_arrays",
    "exchanges_frame",
    "full_exchange_rows",
    "packets_frame",
    "reconnects_frame",
    "sessions_frame",
    "tcp_retransmissions_frame",
]

DIRECTIONS = ("c2b", "b2c")
#: A column: (name, dtype, meaning). ``dtype`` is a pandas dtype name.
Column = tuple[str, str, str]
TS = "datetime64[ns, UTC]"
TD = "timedelta64[ns]"

SCHEMAS: dict[str, tuple[Column, ...]] = {
    "packets": (
        ("ts", TS, "when the packet was complete on the wire (its last frame)"),
        ("conn_id", "int32", "connection number (0-based, like Wireshark's tcp.stream)"),
        ("client_id", "category", "client id of the connection's session"),
        ("direction", "category", "c2b (client to broker) or b2c"),
        ("packet_type", "category", "CONNECT, PUBLISH, PUBACK, ..."),
        ("qos", "Int8", "QoS of a PUBLISH; missing for other packets (only PUBLISH has one)"),
        ("dup", "bool", "DUP flag of a PUBLISH"),
        ("retain", "bool", "RETAIN flag of a PUBLISH"),
        ("packet_id", "Int32", "packet identifier, when the packet has one"),
        ("reason_code", "Int16", "reason/return code (CONNACK, acks, DISCONNECT in MQTT 5)"),
        ("wire_len", "int32", "bytes of the packet on the wire, fixed header included"),
        ("frame", "int32", "capture frame that completed the packet (Wireshark numbering)"),
        ("ex_id", "Int64", "the exchange the packet belongs to (PUBLISH and its acks)"),
        ("resend", "bool", "an MQTT-level re-send (PUBLISH again, PUBREC/PUBREL again)"),
        ("topic", "category", "topic of a PUBLISH (or of the acknowledged PUBLISH)"),
        ("payload_len", "Int32", "payload bytes of a PUBLISH"),
    ),
    "connections": (
        ("conn_id", "int32", "connection number"),
        ("client", "string", "client endpoint ip:port"),
        ("broker", "string", "broker endpoint ip:port"),
        ("transport", "category", "tcp, websocket or tls"),
        ("sides_known", "bool", "client and broker sides known (SYN, port or CONNECT)"),
        ("session", "category", "session key: the client id, or conn:<conn_id>"),
        ("client_id", "category", "client id as sent in CONNECT (empty: none given)"),
        ("assigned_client_id", "string", "MQTT 5 Assigned Client Identifier of the CONNACK"),
        ("version", "Int8", "protocol level: 3 (3.1), 4 (3.1.1), 5"),
        ("version_source", "category", "connect, decoder (inferred) or default"),
        ("keep_alive", "Int32", "keep alive of CONNECT, seconds"),
        ("server_keep_alive", "Int32", "Server Keep Alive of an MQTT 5 CONNACK, seconds"),
        ("clean_start", "boolean", "clean session (3.1.x) / clean start (5) flag"),
        ("session_expiry", "Int64", "MQTT 5 session expiry interval of CONNECT, seconds"),
        ("username", "string", "user name of CONNECT"),
        ("password_present", "bool", "CONNECT carried a password"),
        ("will_topic", "string", "will topic of CONNECT"),
        ("handshake_seen", "bool", "the TCP handshake was captured"),
        ("attempt", "bool", "a TCP connection attempt refused before any MQTT packet (SYN "
                            "answered by RST, or a reset first): not an MQTT connection"),
        ("t_open", TS, "first frame of the connection"),
        ("t_connect", TS, "CONNECT"),
        ("t_connack", TS, "CONNACK"),
        ("connack_code", "Int16", "CONNACK return/reason code"),
        ("accepted", "boolean", "CONNACK code 0"),
        ("session_present", "boolean", "session present flag of CONNACK"),
        ("t_disconnect", TS, "DISCONNECT"),
        ("disconnect_by", "category", "who sent DISCONNECT: c2b or b2c"),
        ("disconnect_reason", "Int16", "MQTT 5 DISCONNECT reason code"),
        ("t_close", TS, "transport close (or end of capture)"),
        ("end", "category", "how it ended: disconnect, fin, rst, idle, keepalive_expired, "
                            "taken_over, reused, end_of_capture"),
        ("transport_end", "category", "the transport's own end: fin, rst, idle, reused, "
                                      "end_of_capture"),
        ("closed_by", "category", "who closed the transport first: c2b or b2c"),
        ("t_last_c2b", TS, "last packet from the client"),
        ("t_last_b2c", TS, "last packet from the broker"),
        ("duration", TD, "t_close - t_open"),
        ("n_packets_c2b", "int64", "MQTT packets from the client"),
        ("n_packets_b2c", "int64", "MQTT packets from the broker"),
        ("n_bytes_c2b", "int64", "MQTT bytes from the client"),
        ("n_bytes_b2c", "int64", "MQTT bytes from the broker"),
        ("n_publish_c2b", "int64", "PUBLISH packets from the client (re-sends included)"),
        ("n_publish_b2c", "int64", "PUBLISH packets from the broker (re-sends included)"),
        ("tcp_retransmissions", "int64", "TCP segments re-sent (bytes already seen)"),
        ("stream_gaps", "int32", "holes in the byte streams (never filled)"),
        ("unfinished_at_end", "int32", "open exchanges of the session when it closed"),
        ("n_before_connect", "int64", "packets before CONNECT (capture started mid-session, "
                                      "or a broken client)"),
    ),
    "sessions": (
        ("session", "category", "session key: the client id (<client id>@<broker> when the "
                                "capture holds it on several brokers), or conn:<conn_id>"),
        ("client_id", "category", "client id (empty: none given; missing: no CONNECT seen)"),
        ("broker", "category", "broker endpoint ip:port the session lives on"),
        ("n_connections", "int32", "connections that carried the session"),
        ("n_reconnects", "int32", "n_connections - 1"),
        ("conn_ids", "string", "the connections, space separated, in order"),
        ("t_first", TS, "first connection's CONNECT (or first packet)"),
        ("t_last", TS, "last connection's close"),
        ("persistent", "boolean", "outlives its connection (clean session 0 / expiry > 0)"),
        ("n_exchanges_c2b", "int64", "exchanges the client sent"),
        ("n_exchanges_b2c", "int64", "exchanges the broker sent"),
        ("n_resends", "int64", "MQTT-level re-sends on its exchanges (both directions): "
                               "their retransmissions summed"),
    ),
    "exchanges": (
        ("ex_id", "int64", "exchange number, in order of the first PUBLISH"),
        ("session", "category", "session key"),
        ("client_id", "category", "client id of the session"),
        ("broker", "category", "broker endpoint ip:port of the connection"),
        ("conn_id", "int32", "connection of the first PUBLISH"),
        ("last_conn_id", "int32", "connection of the last packet of the exchange"),
        ("direction", "category", "direction of the PUBLISH: c2b (client sends) or b2c"),
        ("qos", "int8", "QoS of the PUBLISH: 0, 1, 2"),
        ("packet_id", "Int32", "packet identifier (missing for QoS 0)"),
        ("generation", "int32", "earlier exchanges with the same session, direction and id"),
        ("topic", "category", "topic"),
        ("payload_len", "int32", "payload bytes"),
        ("retain", "bool", "RETAIN flag of the first PUBLISH"),
        ("dup_first", "bool", "DUP flag of the first PUBLISH seen"),
        ("dup_seen", "bool", "any PUBLISH of the exchange had DUP=1"),
        ("frame", "int32", "frame of the first PUBLISH"),
        ("t_publish", TS, "first PUBLISH"),
        ("t_publish_last", TS, "last PUBLISH (re-sends)"),
        ("n_publish", "int32", "PUBLISH packets sent (1 + re-sends)"),
        ("n_dup", "int32", "PUBLISH packets with DUP=1"),
        ("t_puback", TS, "first PUBACK (QoS 1)"),
        ("t_puback_last", TS, "last PUBACK"),
        ("n_puback", "int32", "PUBACK packets"),
        ("puback_reason", "Int16", "reason code of the first PUBACK"),
        ("t_pubrec", TS, "first PUBREC (QoS 2)"),
        ("t_pubrec_last", TS, "last PUBREC"),
        ("n_pubrec", "int32", "PUBREC packets"),
        ("pubrec_reason", "Int16", "reason code of the first PUBREC"),
        ("t_pubrel", TS, "first PUBREL (QoS 2)"),
        ("t_pubrel_last", TS, "last PUBREL"),
        ("n_pubrel", "int32", "PUBREL packets"),
        ("pubrel_reason", "Int16", "reason code of the first PUBREL"),
        ("t_pubcomp", TS, "first PUBCOMP (QoS 2)"),
        ("t_pubcomp_last", TS, "last PUBCOMP"),
        ("n_pubcomp", "int32", "PUBCOMP packets"),
        ("pubcomp_reason", "Int16", "reason code of the first PUBCOMP"),
        ("t_end", TS, "when it ended: final ack, refusal, abandonment (NaT if incomplete)"),
        ("outcome", "category", "complete, complete_after_reconnect, incomplete (open at end "
                                "of capture), abandoned (session ended first), refused "
                                "(reason code >= 0x80), protocol_error, evicted (state cap)"),
        ("last_step", "category", "last step reached: publish, puback, pubrec, pubrel, "
                                  "pubcomp"),
        ("spans_reconnect", "bool", "packets of the exchange on more than one connection"),
        ("dup_after_complete", "int32", "DUP re-sends after the exchange had finished"),
        ("retransmissions", "int32", "MQTT-level re-sends: extra PUBLISH, PUBREC and PUBREL"),
        ("latency_puback", TD, "t_puback - t_publish"),
        ("latency_pubrec", TD, "t_pubrec - t_publish"),
        ("latency_pubrel", TD, "t_pubrel - t_pubrec"),
        ("latency_pubcomp", TD, "t_pubcomp - t_pubrel"),
        ("latency_total", TD, "t_end - t_publish, for completed or refused exchanges (QoS 1 "
                             "and 2: QoS 0 has no handshake, NaT)"),
        ("latency_ms", "float64", "latency_total in milliseconds"),
        ("wire_publish", TD, "time the first PUBLISH spent on the wire: from the frame with its "
                             "first byte to the one completing it (NaT when one frame held it)"),
        ("wire_puback", TD, "time on the wire of the first PUBACK (likewise)"),
        ("wire_pubrec", TD, "time on the wire of the first PUBREC (likewise)"),
        ("wire_pubrel", TD, "time on the wire of the first PUBREL (likewise)"),
        ("wire_pubcomp", TD, "time on the wire of the first PUBCOMP (likewise)"),
        ("cause", "category", "why it was slow or not delivered (docs/diagnoses.md): "
                              "nagle_delayed_ack, zero_window, retransmission_timeout, ..., "
                              "no_known_cause for an outlier nothing explains; null when it "
                              "was not diagnosed"),
    ),
    "reconnects": (
        ("session", "category", "session key"),
        ("client_id", "category", "client id"),
        ("prev_conn_id", "int32", "the connection that dropped (or was taken over)"),
        ("next_conn_id", "int32", "the connection that resumed the session"),
        ("t_drop", TS, "close of the previous connection (or the takeover CONNECT)"),
        ("t_connect", TS, "CONNECT of the next connection"),
        ("gap", TD, "t_connect - t_drop"),
        ("cause", "category", "how the previous connection ended (its end)"),
        ("disconnect_reason", "Int16", "MQTT 5 DISCONNECT reason of the previous connection"),
        ("clean_start", "boolean", "clean start flag of the new CONNECT"),
        ("session_present", "boolean", "session present flag of the new CONNACK"),
        ("unfinished_c2b", "int32", "client exchanges left open by the previous connection"),
        ("unfinished_b2c", "int32", "broker exchanges left open by the previous connection"),
        ("redelivered_publish", "int32", "PUBLISH re-sends on the new connection of earlier "
                                         "exchanges"),
        ("redelivered_pubrel", "int32", "PUBREL re-sends on the new connection"),
        ("resumed", "int32", "earlier exchanges completed on the new connection"),
        ("abandoned", "int32", "earlier exchanges dropped with the session"),
        ("diagnosis", "category", "why the previous connection dropped (docs/diagnoses.md: "
                                  "keepalive_timeout, ...); null when no cause was found. "
                                  "(``cause`` is how it ended)"),
    ),
    "deliveries": (
        ("pub_ex_id", "int64", "the publisher's exchange"),
        ("sub_ex_id", "Int64", "the subscriber's exchange (missing: not delivered)"),
        ("publisher", "category", "publisher's session"),
        ("subscriber", "category", "subscriber's session"),
        ("broker", "category", "broker endpoint ip:port both are connected to"),
        ("topic", "category", "topic"),
        ("t_publish", TS, "publisher's PUBLISH"),
        ("t_delivered", TS, "broker's PUBLISH to the subscriber"),
        ("latency", TD, "t_delivered - t_publish"),
        ("latency_ms", "float64", "latency in milliseconds"),
        ("pub_qos", "int8", "QoS the publisher used"),
        ("sub_qos", "Int8", "QoS of the copy the subscriber got"),
        ("granted_qos", "Int8", "QoS granted by the subscriber's SUBACK, when seen"),
        ("downgraded", "boolean", "sub_qos < pub_qos"),
        ("status", "category", "delivered, duplicate (a copy the subscriber already had), "
                               "not_delivered"),
        ("reason", "category", "for not_delivered: subscriber_connected (a loss), "
                               "subscriber_offline, or subscriber_left (its connection ended "
                               "within 1 s of the publication)"),
        ("retain", "bool", "RETAIN flag of the delivered copy"),
        ("cause", "category", "why it came late (the subscriber's exchange's cause: "
                              "offline_queue_flush, receive_maximum, ...) or never came "
                              "(subscriber_offline, connection_lost, zero_window, "
                              "no_known_cause); docs/diagnoses.md"),
    ),
    "anomalies": (
        ("ts", TS, "when"),
        ("kind", "category", "short stable name (glossary: anomaly kinds)"),
        ("severity", "category", "anomaly, or note (a fact about the traffic, not a fault)"),
        ("source", "category", "decoder (bytes, framing, TCP) or analysis (MQTT rules)"),
        ("conn_id", "Int32", "connection"),
        ("session", "category", "session key"),
        ("direction", "category", "c2b or b2c"),
        ("frame", "int64", "capture frame"),
        ("packet_id", "Int32", "packet identifier involved"),
        ("ex_id", "Int64", "exchange involved"),
        ("detail", "string", "what was wrong, in words"),
    ),
    "tcp_retransmissions": (
        ("ts", TS, "when"),
        ("conn_id", "int32", "connection"),
        ("direction", "category", "c2b or b2c"),
        ("length", "int32", "bytes re-sent"),
        ("frame", "int32", "capture frame"),
    ),
    #: TCP streams that carried data and were not decoded (:mod:`.undecoded`).
    "undecoded_streams": UNDECODED_SCHEMA,
    #: Wireshark's TCP flags, one row per flag (:mod:`.tcp_evidence`).
    "tcp_evidence": TCP_EVIDENCE_SCHEMA,
}


# -- column helpers ---------------------------------------------------------------------------


def _ts(values: Any) -> pd.Series:
    arr = np.asarray(values, dtype=np.int64).view("M8[ns]")
    return pd.Series(pd.DatetimeIndex(arr).tz_localize("UTC"))


def _td(later: Any, earlier: Any) -> np.ndarray:
    a = np.asarray(later, dtype=np.int64).view("M8[ns]")
    b = np.asarray(earlier, dtype=np.int64).view("M8[ns]")
    out: np.ndarray = a - b
    return out


def _nullable(values: Any, dtype: str, missing: int = -1) -> pd.api.extensions.ExtensionArray:
    arr = np.asarray(values)
    np_dtype = {"Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64}[dtype]
    return pd.arrays.IntegerArray(arr.astype(np_dtype), arr == missing)


def _cat(codes: Any, categories: Sequence[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int32),
                                     categories=pd.Index(list(categories), dtype=object),
                                     validate=False)


def _cat_of(values: Sequence[str | None]) -> pd.Categorical:
    return pd.Categorical(list(values))


def _frame(name: str, cols: dict[str, Any], n: int,
           only: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame with exactly the declared columns (or the ``only`` ones), in order, with
    their dtypes."""
    out: dict[str, Any] = {}
    for col, dtype, _ in SCHEMAS[name]:
        if only is not None and col not in only:
            continue
        value = cols[col]
        series = value if isinstance(value, pd.Series) else pd.Series(value, copy=False)
        if str(series.dtype) != dtype:
            series = series.astype(cast(Any, dtype))
        out[col] = series.reset_index(drop=True)
    df = pd.DataFrame(out)
    if not out:
        df = pd.DataFrame(index=range(n))
    return df


def _from_records(name: str, records: Sequence[Any],
                  extra: dict[str, Callable[[Any], Any]] | None = None) -> pd.DataFrame:
    """A table of few rows from record objects (connections, sessions, ...)."""
    extra = extra or {}
    cols: dict[str, Any] = {}
    for col, dtype, _ in SCHEMAS[name]:
        get = extra.get(col)
        values = [get(r) if get is not None else getattr(r, col) for r in records]
        if dtype == TS:
            cols[col] = _ts([NO_TS if v is None else v for v in values])
        elif dtype == TD:
            cols[col] = pd.Series([pd.NaT if v is None else pd.Timedelta(v, "ns")
                                   for v in values], dtype=TD)
        elif dtype == "category":
            cols[col] = pd.Series(_cat_of(values))
        elif dtype[0] == "I":  # nullable integer
            cols[col] = pd.Series(pd.array([None if v is None else int(v) for v in values],
                                           dtype=cast(Any, dtype)))
        elif dtype == "boolean":
            cols[col] = pd.Series(pd.array(values, dtype="boolean"))
        elif dtype == "string":
            cols[col] = pd.Series(pd.array([None if v is None else str(v) for v in values],
                                           dtype="string"))
        else:
            cols[col] = pd.Series(np.asarray(values, dtype=dtype) if values else
                                  np.zeros(0, dtype=dtype))
    return _frame(name, cols, len(records))


# -- the tables ---------------------------------------------------------------------------------


class _ExchangeColumns:
    """The exchange columns of both stores (QoS 1/2 and QoS 0) as numpy arrays in ``ex_id``
    order, each merged only when first asked for; QoS 0 rows get the defaults of the columns
    they do not have, and ``generation`` is numbered here."""

    def __init__(self, r: CorrelationResult) -> None:
        r.require_detail("the exchanges table")
        # chunk by chunk: the stores are never copied whole, only the columns asked for
        self.full = r.exchanges.chunks() or [r.exchanges.view()]
        self.q0 = r.q0.chunks() or [r.q0.view()]
        self.order = np.argsort(np.concatenate([c["ex_id"] for c in self.full + self.q0]),
                                kind="stable")
        self.defaults = r.exchanges.defaults
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, name: str) -> np.ndarray:
        got = self._cache.get(name)
        if got is not None:
            return got
        if name == "generation":
            out = _generations(self["session"], self["direction"], self["packet_id"])
        else:
            dtype = self.full[0].dtype[name]
            parts = [c[name] for c in self.full]
            parts.extend(_q0_column(q0, name, dtype, self.defaults) for q0 in self.q0)
            out = np.concatenate(parts)[self.order]
        self._cache[name] = out
        return out


def _q0_column(q0: np.ndarray, name: str, dtype: np.dtype[Any],
               defaults: dict[str, int]) -> np.ndarray:
    """Exchange column ``name`` of QoS 0 rows (:data:`~.records.Q0_COLUMNS`): a QoS 0 PUBLISH
    is one packet, so its last PUBLISH, end and DUP count are its first; the other columns take
    their defaults."""
    if name in (q0.dtype.names or ()):
        b = q0[name]
    elif name == "last_conn_id":
        b = q0["conn_id"]
    elif name in ("t_publish_last", "t_end"):
        b = q0["t_publish"]
    elif name == "n_dup":
        b = q0["dup_first"]
    else:  # qos 0, and the defaults of the columns QoS 0 rows do not have
        b = np.full(len(q0), 0 if name == "qos" else defaults[name], dtype=dtype)
    out: np.ndarray = b.astype(dtype, copy=False)
    return out


def full_exchange_rows(q0: np.ndarray) -> np.ndarray:
    """QoS 0 rows as rows of every exchange column (:data:`~.records.EXCHANGE_COLUMNS`)."""
    store = RowStore(EXCHANGE_COLUMNS)
    out = np.empty(len(q0), dtype=np.dtype(store.dtype_descr()))
    for name in store.names:
        out[name] = _q0_column(q0, name, out.dtype[name], store.defaults)
    return out


def exchange_arrays(r: CorrelationResult) -> dict[str, np.ndarray]:
    """Every exchange column as a numpy array, in ``ex_id`` order, with ``generation``."""
    cols = _ExchangeColumns(r)
    return {name: cols[name] for name in (*(n for n, _, _ in EXCHANGE_COLUMNS), "generation")}


def _generations(session: np.ndarray, direction: np.ndarray, packet_id: np.ndarray
                 ) -> np.ndarray:
    """For rows in ``ex_id`` order: how many earlier rows have the same session, direction and
    packet id (0 for QoS 0, which has no id)."""
    return Generations().number(session, direction, packet_id)


class Generations:
    """Numbers the ``generation`` column over rows given in ``ex_id`` order, one block after
    another: a row's generation is how many earlier rows (in this block or an earlier one) have
    the same session, direction and packet id; 0 for QoS 0, which has no id. Keeps one count
    per key seen (12 bytes each), not the rows."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)

    def number(self, session: np.ndarray, direction: np.ndarray, packet_id: np.ndarray
               ) -> np.ndarray:
        n = len(packet_id)
        key = ((session.astype(np.int64) << 17) | (direction.astype(np.int64) << 16)
               | np.maximum(packet_id, 0).astype(np.int64))
        order = np.argsort(key, kind="stable")
        sk = key[order]
        idx = np.arange(n)
        starts = np.ones(n, dtype=bool)
        starts[1:] = sk[1:] != sk[:-1]
        rank = idx - np.maximum.accumulate(np.where(starts, idx, 0)) if n else idx
        # the counts of earlier blocks
        pos = np.searchsorted(self._keys, sk)
        known = pos < len(self._keys)
        known[known] = self._keys[pos[known]] == sk[known]
        rank = rank + np.where(known, self._counts[np.minimum(pos, len(self._counts) - 1)]
                               if len(self._counts) else 0, 0)
        gen = np.empty(n, dtype=np.int32)
        gen[order] = rank
        gen[packet_id < 0] = 0
        if n:  # each key's count: its last rank + 1
            last = np.ones(n, dtype=bool)
            last[:-1] = sk[1:] != sk[:-1]
            keys = np.concatenate([self._keys, sk[last]])
            counts = np.concatenate([self._counts, rank[last] + 1])
            # (a key of this block replaces its earlier count: the stable sort keeps it last)
            order2 = np.argsort(keys, kind="stable")
            keys, counts = keys[order2], counts[order2]
            keep = np.ones(len(keys), dtype=bool)
            keep[:-1] = keys[1:] != keys[:-1]
            self._keys, self._counts = keys[keep], counts[keep]
        return gen


class TableMaps:
    """What turns the codes of the stores' rows into a table's values, resolved once at the
    end of the analysis (session keys after ``name_sessions``, client ids, brokers, causes):
    made once per result, used by every block of a table."""

    def __init__(self, r: CorrelationResult) -> None:
        self.r = r

    @functools.cached_property
    def client_codes(self) -> tuple[np.ndarray, list[str]]:
        return _client_codes(self.r)

    @functools.cached_property
    def conn_client_codes(self) -> tuple[np.ndarray, list[str]]:
        return _conn_client_codes(self.r)

    @functools.cached_property
    def conn_brokers(self) -> np.ndarray:
        return conn_broker_codes(self.r)

    @functools.cached_property
    def session_brokers(self) -> np.ndarray:
        return session_broker_codes(self.r)

    @functools.cached_property
    def causes(self) -> tuple[np.ndarray, np.ndarray]:
        """The diagnosed exchanges' ids (sorted) and their cause codes."""
        from .diagnoses import CAUSES, NO_KNOWN_CAUSE

        cats = [*CAUSES, NO_KNOWN_CAUSE]
        found = self.r.diagnoses.exchanges if self.r.diagnoses is not None else {}
        ids = np.fromiter(found, dtype=np.int64, count=len(found))
        vals = np.fromiter((cats.index(c) for c in found.values()), dtype=np.int8,
                           count=len(found))
        order = np.argsort(ids)
        return ids[order], vals[order]


def exchanges_frame(r: CorrelationResult, columns: Sequence[str] | None = None, *,
                    rows: Mapping[str, np.ndarray] | None = None,
                    maps: TableMaps | None = None) -> pd.DataFrame:
    """The exchanges table, or only some of its columns (in table order), built from only the
    store columns they need: ``qosinspect flows`` on a big capture builds 20 columns of 49.
    ``rows``: build it from these columns instead (a block, in ``ex_id`` order, ``generation``
    included: :mod:`.spool`) with ``maps``."""
    a: _ExchangeColumns | Mapping[str, np.ndarray] = _ExchangeColumns(r) if rows is None else rows
    m = maps if maps is not None else TableMaps(r)
    n = len(a) if rows is None else len(rows["ex_id"])
    wanted = [c for c, _, _ in SCHEMAS["exchanges"] if columns is None or c in columns]
    unknown = set(columns or ()) - {c for c, _, _ in SCHEMAS["exchanges"]}
    if unknown:
        raise KeyError(f"no exchange column {sorted(unknown)}")

    @functools.cache
    def done() -> np.ndarray:
        """Exchanges with a handshake that ended: QoS 0 has none, so no latency either."""
        return np.isin(a["outcome"], [OUTCOMES.index("complete"), OUTCOMES.index(
            "complete_after_reconnect"), OUTCOMES.index("refused")]) & (a["qos"] > 0)

    @functools.cache
    def total() -> np.ndarray:
        t = _td(a["t_end"], a["t_publish"])
        t[~done()] = np.timedelta64("NaT")
        return t

    def latency_ms() -> np.ndarray:
        ms: np.ndarray = total().astype(np.int64) / 1e6
        ms[~done()] = np.nan
        return ms

    def client_id() -> pd.Categorical:
        codes, cats = m.client_codes
        sess = a["session"]
        return _cat(codes[sess] if n else sess, cats)

    def broker() -> pd.Categorical:
        codes = m.conn_brokers
        conn = a["conn_id"]
        return _cat(codes[conn] if n else conn, r.brokers)

    make: dict[str, Callable[[], Any]] = {
        "broker": broker,
        "session": lambda: _cat(a["session"], r.session_keys),
        "client_id": client_id,
        "direction": lambda: _cat(a["direction"], DIRECTIONS),
        "packet_id": lambda: _nullable(a["packet_id"], "Int32"),
        "topic": lambda: _cat(a["topic"], r.topics.values),
        "retain": lambda: a["retain"].astype(bool),
        "dup_first": lambda: a["dup_first"].astype(bool),
        "dup_seen": lambda: a["n_dup"] > 0,
        "outcome": lambda: _cat(a["outcome"], OUTCOMES),
        "last_step": lambda: _cat(a["last_step"], STEPS),
        "spans_reconnect": lambda: a["spans_reconnect"].astype(bool),
        "retransmissions": lambda: (a["n_publish"] - 1 + np.maximum(a["n_pubrec"] - 1, 0)
                                    + np.maximum(a["n_pubrel"] - 1, 0)),
        "latency_puback": lambda: _td(a["t_puback"], a["t_publish"]),
        "latency_pubrec": lambda: _td(a["t_pubrec"], a["t_publish"]),
        "latency_pubrel": lambda: _td(a["t_pubrel"], a["t_pubrec"]),
        "latency_pubcomp": lambda: _td(a["t_pubcomp"], a["t_pubrel"]),
        "latency_total": total,
        "latency_ms": latency_ms,
        "cause": lambda: _causes(m, a["ex_id"]),
        **{f"wire_{step}": functools.partial(_wire, a, f"wire_{step}") for step in STEPS},
    }
    cols: dict[str, Any] = {}
    for name in wanted:
        if name in make:
            cols[name] = make[name]()
        elif name.endswith("_reason"):
            cols[name] = _nullable(a[name], "Int16")
        elif name.startswith("t_"):
            cols[name] = _ts(a[name])
        else:
            cols[name] = a[name]
    return _frame("exchanges", cols, n, wanted)


def _client_codes(r: CorrelationResult) -> tuple[np.ndarray, list[str]]:
    """Session code -> client id category code, and the categories."""
    cats: dict[str, int] = {}
    codes = np.full(len(r.client_ids), -1, dtype=np.int32)
    for i, cid in enumerate(r.client_ids):
        if cid is not None:
            codes[i] = cats.setdefault(cid, len(cats))
    return codes, list(cats)


def packets_frame(r: CorrelationResult, conn_ids: Iterable[int] | None = None,
                  resend_only: bool = False, *, rows: np.ndarray | None = None,
                  maps: TableMaps | None = None) -> pd.DataFrame:
    """The packets table, or only the packets of some connections / only the re-sends (chosen
    chunk by chunk before any column is built: a ladder of one client in a capture of millions
    of packets costs only its own rows); ``rows``, ``maps``: from a block (:mod:`.spool`)."""
    if rows is None:
        r.require_detail("the packets table")
    store = r.packets if r.packets is not None else _empty_packets()
    if rows is not None:
        a = rows
    elif conn_ids is None and not resend_only:
        a = store.view()
    else:
        wanted = None if conn_ids is None else np.array(sorted(set(conn_ids)), dtype=np.int32)
        parts = []
        for chunk in store.chunks():
            keep = np.ones(len(chunk), dtype=bool)
            if wanted is not None:
                keep &= np.isin(chunk["conn_id"], wanted)
            if resend_only:
                keep &= chunk["resend"] != 0
            parts.append(chunk[keep])
        a = np.concatenate(parts) if parts else store.view()
    n = len(a)
    client_codes, client_cats = (maps if maps is not None else TableMaps(r)).conn_client_codes
    conn = a["conn_id"]
    cols: dict[str, Any] = {
        "ts": _ts(a["ts_ns"]),
        "conn_id": conn,
        "client_id": _cat(client_codes[conn] if n else conn, client_cats),
        "direction": _cat(a["direction"], DIRECTIONS),
        "packet_type": _cat(a["packet_type"], PACKET_TYPE_NAMES),
        "qos": _nullable(a["qos"], "Int8"),
        "dup": a["dup"].astype(bool),
        "retain": a["retain"].astype(bool),
        "packet_id": _nullable(a["packet_id"], "Int32"),
        "reason_code": _nullable(a["reason_code"], "Int16"),
        "wire_len": a["wire_len"],
        "frame": a["frame"],
        "ex_id": _nullable(a["ex_id"], "Int64"),
        "resend": a["resend"].astype(bool),
        "topic": _cat(a["topic"], r.topics.values),
        "payload_len": _nullable(a["payload_len"], "Int32"),
    }
    return _frame("packets", cols, n)


def _empty_packets() -> RowStore:
    from .records import PACKET_COLUMNS

    return RowStore(PACKET_COLUMNS)


def _conn_client_codes(r: CorrelationResult) -> tuple[np.ndarray, list[str]]:
    """conn_id -> client id category code (via its connection record)."""
    # (one pass: a result's connections are made from their rows as they are read)
    pairs = [(c.conn_id, c.client_id) for c in r.connections]
    size = max((conn_id for conn_id, _ in pairs), default=-1) + 1
    codes = np.full(size, -1, dtype=np.int32)
    cats: dict[str, int] = {}
    for conn_id, client_id in pairs:
        if client_id is not None:
            codes[conn_id] = cats.setdefault(client_id, len(cats))
    return codes, list(cats)


def connections_frame(r: CorrelationResult) -> pd.DataFrame:
    # (a list: the records are read once per column, and a result's are made when read)
    return _from_records("connections", list(r.connections), {
        "accepted": lambda c: c.accepted,
        "duration": lambda c: (None if c.t_close is None or c.t_open is None
                               else c.t_close - c.t_open),
    })


def sessions_frame(r: CorrelationResult) -> pd.DataFrame:
    return _from_records("sessions", r.sessions, {
        "n_connections": lambda s: s.n_connections,
        "n_reconnects": lambda s: s.n_reconnects,
        "conn_ids": lambda s: " ".join(str(i) for i in s.conn_ids),
    })


def reconnects_frame(r: CorrelationResult) -> pd.DataFrame:
    found = r.diagnoses.reconnects if r.diagnoses is not None else {}
    index = {id(rc): i for i, rc in enumerate(r.reconnects)}
    return _from_records("reconnects", r.reconnects, {
        "gap": lambda x: x.gap_ns, "diagnosis": lambda x: found.get(index[id(x)])})


def _wire(a: Any, name: str) -> np.ndarray:
    """A ``wire_*`` column: the stored nanoseconds, 0 (one frame held the packet) as NaT."""
    ns = np.asarray(a[name], dtype=np.int64)
    out: np.ndarray = np.where(ns > 0, ns, np.iinfo(np.int64).min).view("m8[ns]")
    return out


def _causes(m: TableMaps, ex_ids: np.ndarray) -> pd.Categorical:
    """The ``cause`` column: the diagnosis of each exchange by ``ex_id`` (null: none)."""
    from .diagnoses import CAUSES, NO_KNOWN_CAUSE

    cats = [*CAUSES, NO_KNOWN_CAUSE]
    codes = np.full(len(ex_ids), -1, dtype=np.int8)
    ids, vals = m.causes
    if len(ids):
        pos = np.clip(np.searchsorted(ids, ex_ids), 0, len(ids) - 1)
        hit = ids[pos] == ex_ids
        codes[hit] = vals[pos[hit]]
    return _cat(codes, cats)


def anomalies_frame(r: CorrelationResult) -> pd.DataFrame:
    return _from_records("anomalies", r.anomalies, {"ts": lambda a: a.ts_ns})


def deliveries_frame(r: CorrelationResult, *, rows: np.ndarray | None = None,
                     maps: TableMaps | None = None) -> pd.DataFrame:
    """The deliveries table (``rows``, ``maps``: from a block, :mod:`.spool`)."""
    if rows is None:
        r.require_detail("the deliveries table")
    store = r.deliveries
    if store is None:
        from .records import DELIVERY_COLUMNS

        store = RowStore(DELIVERY_COLUMNS)
    a = store.view() if rows is None else rows
    n = len(a)
    m = maps if maps is not None else TableMaps(r)
    latency = _td(a["t_delivered"], a["t_publish"])
    sub_qos = a["sub_qos"]
    cols: dict[str, Any] = {
        "pub_ex_id": a["pub_ex_id"],
        "sub_ex_id": _nullable(a["sub_ex_id"], "Int64"),
        "publisher": _cat(a["publisher"], r.session_keys),
        "subscriber": _cat(a["subscriber"], r.session_keys),
        "broker": _cat(m.session_brokers[
            a["publisher"]] if n else a["publisher"],
                       r.brokers),
        "topic": _cat(a["topic"], r.topics.values),
        "t_publish": _ts(a["t_publish"]),
        "t_delivered": _ts(a["t_delivered"]),
        "latency": latency,
        "latency_ms": np.where(np.isnat(latency), np.nan, latency.astype(np.int64) / 1e6),
        "pub_qos": a["pub_qos"],
        "sub_qos": _nullable(sub_qos, "Int8"),
        "granted_qos": _nullable(a["granted_qos"], "Int8"),
        "downgraded": pd.arrays.BooleanArray(sub_qos < a["pub_qos"], sub_qos < 0),
        "status": _cat(a["status"], DELIVERY_STATUSES),
        "reason": _cat(np.where(a["reason"] > 0, a["reason"] - 1, -1), DELIVERY_REASONS[1:]),
        "retain": a["retain"].astype(bool),
        "cause": _delivery_causes(m, a),
    }
    return _frame("deliveries", cols, n)


def _delivery_causes(m: TableMaps, a: Any) -> pd.Categorical:
    """A copy's cause: its exchange's (a copy the broker held), or for a copy never delivered
    the verdict on (publication, subscriber)."""
    from .diagnoses import CAUSES, NO_KNOWN_CAUSE

    cats = [*CAUSES, NO_KNOWN_CAUSE]
    codes = np.asarray(_causes(m, a["sub_ex_id"]).codes, dtype=np.int8).copy()
    found = m.r.diagnoses.deliveries if m.r.diagnoses is not None else {}
    if found:
        lost = np.flatnonzero(a["status"] == DELIVERY_STATUSES.index("not_delivered"))
        pubs, subs = a["pub_ex_id"][lost], a["subscriber"][lost]
        for row, pub, sub in zip(lost.tolist(), pubs.tolist(), subs.tolist(), strict=True):
            cause = found.get((pub, sub))
            codes[row] = -1 if cause is None else cats.index(cause)
    return _cat(codes, cats)


def tcp_retransmissions_frame(r: CorrelationResult, *, rows: np.ndarray | None = None,
                              maps: TableMaps | None = None) -> pd.DataFrame:
    """The TCP retransmissions table (``rows``: from a block, :mod:`.spool`)."""
    if rows is None and r.sunk:
        r.require_detail("the tcp_retransmissions table")
    a = r.tcp_retransmissions.view() if rows is None else rows
    cols: dict[str, Any] = {
        "ts": _ts(a["ts_ns"]),
        "conn_id": a["conn_id"],
        "direction": _cat(a["direction"], DIRECTIONS),
        "length": a["length"],
        "frame": a["frame"],
    }
    return _frame("tcp_retransmissions", cols, len(a))

"""The packed row stores and the interner."""

from __future__ import annotations

import pytest

from qosinspect.analysis.records import NO_TS, Interner, RowStore

SPEC = (("a", "q", NO_TS), ("b", "i", -1), ("c", "b", 0))


@pytest.mark.parametrize("small", [False, True])
def test_rows_across_chunks(small: bool) -> None:
    st = RowStore(SPEC, first_chunk_rows=2, max_chunk_rows=4) if small else RowStore(SPEC)
    for i in range(11):
        assert st.append(1_700_000_000_000_000_000 + i, -i, i % 2) == i
    assert st.rows == 11 and st.size == 13
    # chunks of 2, 2, 4, 4 rows (then up to 4) or one of 1024
    assert [len(c) for c in st.chunks()] == ([2, 2, 4, 3] if small else [11])
    assert st.nbytes() == (12 if small else 1024) * 13
    assert st.get("a", 9) == 1_700_000_000_000_000_009 and st.get("b", 9) == -9
    st.set("b", 6, 123)
    st.add("c", 6)
    assert st.row(6) == {"a": 1_700_000_000_000_000_006, "b": 123, "c": 1}
    v = st.view()
    assert list(v["b"])[5:8] == [-5, 123, -7] and v["a"][0] == 1_700_000_000_000_000_000
    assert st.get("nope", 3, default=77) == 77
    st.set("nope", 3, 1)  # a column this store does not have: nothing happens
    with pytest.raises(IndexError):
        st.get("a", 11)


def test_empty_store_views() -> None:
    st = RowStore(SPEC)
    assert st.chunks() == [] and len(st.view()) == 0 and st.view().dtype.names == ("a", "b",
                                                                                   "c")


def test_interner() -> None:
    it = Interner()
    assert [it.code(v) for v in ("x", "y", "x", None)] == [0, 1, 0, -1]
    assert it.value(1) == "y" and it.value(-1) is None and len(it) == 2


def test_record_properties() -> None:
    from qosinspect.analysis.records import Connection, Delivery, Reconnect, Session

    c = Connection(conn_id=0, client="a:1", broker="b:2")
    assert c.accepted is None
    c.connack_code = 0x87
    assert c.accepted is False
    s = Session(session="x", client_id="x", conn_ids=[3, 5, 9])
    assert (s.n_connections, s.n_reconnects) == (3, 2)
    assert Session(session="y", client_id=None).n_reconnects == 0
    rc = Reconnect(session="x", client_id="x", prev_conn_id=3, next_conn_id=5, t_drop=None,
                   t_connect=10, cause=None, disconnect_reason=None, clean_start=None)
    assert rc.gap_ns is None
    d = Delivery(pub_ex_id=1, sub_ex_id=None, publisher="p", subscriber="s", topic="t",
                 t_publish=0, t_delivered=None, pub_qos=2, sub_qos=None, granted_qos=None,
                 status="not_delivered", reason="subscriber_offline", retain=False)
    assert d.downgraded is False
    d.sub_qos = 1
    assert d.downgraded is True


def test_exchange_from_row_turns_sentinels_into_none() -> None:
    from qosinspect.analysis.records import EXCHANGE_COLUMNS, Exchange

    row = {name: default for name, _, default in EXCHANGE_COLUMNS}
    it = Interner()
    row.update(ex_id=4, session=0, qos=1, packet_id=7, topic=it.code("a/b"), t_publish=5,
               t_publish_last=5, n_publish=1, outcome=3, last_step=0, direction=1)
    ex = Exchange.from_row(row, it, "sess", "cid")
    assert (ex.ex_id, ex.session, ex.client_id, ex.topic, ex.direction) == (4, "sess", "cid",
                                                                            "a/b", "b2c")
    assert (ex.t_puback, ex.puback_reason, ex.packet_id) == (None, None, 7)
    assert (ex.outcome, ex.last_step, ex.retransmissions) == ("open_at_end", "publish", 0)


def test_batched_rows_pack_the_same_as_single_rows() -> None:
    """Rows waiting on the batch are packed at BATCH rows, on reads, and across chunks."""
    st = RowStore(SPEC, first_chunk_rows=4, max_chunk_rows=8, batch_rows=4)
    single = RowStore(SPEC)
    for i in range(23):
        values = (1_700_000_000_000_000_000 + i, -i, i % 3)
        if i % 2:
            st.batch.append(values)  # the hot paths' inlined append
            if len(st.batch) >= st.batch_rows:
                st.flush()
        else:
            st.append(*values)
        single.append(*values)
        if i == 9:
            assert st.get("b", 9) == -9  # a read flushes a partial batch
    assert st.rows == 23 and st.packed + len(st.batch) == 23
    assert list(st.view()) == list(single.view())
    assert sum(len(c) for c in st.chunks()) == 23 and not st.batch


def test_open_exchange_rows_follow_the_column_specs() -> None:
    """The row an exchange writes when it finishes is read off it in the store's column order
    (written out in state.py for the compiler: this holds the two together)."""
    from qosinspect.analysis.records import EXCHANGE_COLUMNS, REPORT_EXCHANGE_COLUMNS
    from qosinspect.analysis.state import OpenExchange

    ex = OpenExchange(1, 2, 3, 1, 2, 7, 5, 10, 1, 0, 9, 1234, 99, (1 << 16) | 7)
    # the small fields are packed in one int: each its own value, in its width
    packed = {"direction": 1, "qos": 2, "packet_id": 7, "retain": 1, "dup_first": 0,
              "outcome": 5, "last_step": 3, "spans_reconnect": 1, "dup_after_complete": 0}
    ex.outcome, ex.last_step, ex.spans_reconnect = 5, 3, 1
    for i, (name, _, _) in enumerate(EXCHANGE_COLUMNS):
        if name in packed:
            assert getattr(ex, name) == packed[name], name
            continue
        # the acknowledgement steps' fields live in their own object, made at the first ack
        setattr(ex.acks if hasattr(ex.acks, name) else ex, name, 1000 + i)
    assert ex.detail_row() == tuple(packed.get(name, 1000 + i)
                                    for i, (name, _, _) in enumerate(EXCHANGE_COLUMNS))
    assert ex.key == (1 << 16) | 7
    # the report row ends with the broker's code, which the exchange does not hold
    assert REPORT_EXCHANGE_COLUMNS[-1][0] == "broker"
    assert ex.report_row(77) == (*(getattr(ex, name) for name, _, _ in
                                   REPORT_EXCHANGE_COLUMNS[:-1]), 77)


def test_analysis_options_survive_pickling() -> None:
    """``qosinspect batch`` sends the options to worker processes: compiled by mypyc, the frozen
    dataclass could not be unpickled (FrozenInstanceError in every worker)."""
    import pickle

    from qosinspect.analysis.options import AnalysisOptions

    options = AnalysisOptions(packets=False, max_open_total=7, same_broker=(("a:1", "b:2"),))
    assert pickle.loads(pickle.dumps(options)) == options

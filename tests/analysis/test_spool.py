"""Detail mode with a row sink (issue 14, "written to Parquet in chunks"): the rows of the large
tables leave the analysis as they become final, and the tables read back from the spool, a block
at a time, equal the in-memory tables: same rows, same order, same dtypes and categories.

Small blocks and a small joinable window make even the shipped captures span many blocks, and
exchanges leave the window out of ``ex_id`` order (the case the spool's buckets are for)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qosinspect.analysis.api import Analysis, analyze_capture
from qosinspect.analysis.correlate import Correlator
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.analysis.records import PACKET_COLUMNS, RowStore
from qosinspect.analysis.spool import SPOOLED_TABLES, RowSpool
from qosinspect.analysis.tables import Generations, _generations
from qosinspect.testing.concat import concatenate_shifted
from qosinspect.testing.stresscaps import write_qos1_flows
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = sorted(p for p in (PROJECT_ROOT / "captures").glob("*.pcap*"))
#: Tables kept in memory either way: equal with and without a sink.
IN_MEMORY = ("connections", "sessions", "reconnects", "anomalies", "undecoded_streams")


def _both(path: Path, tmp: Path, block_rows: int, **options: Any
          ) -> tuple[Analysis, Analysis, RowSpool]:
    opts = AnalysisOptions(packets=True, **options)
    spool = RowSpool(tmp / "spool", block_rows)
    return (analyze_capture(path, options=opts), analyze_capture(path, options=opts, sink=spool),
            spool)


def _assert_same(memory: Analysis, spooled: Analysis, spool: RowSpool) -> None:
    for table in SPOOLED_TABLES:
        frames = list(spool.frames(table, spooled.result))
        assert all(len(f) <= spool.block_rows for f in frames)
        got = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        pd.testing.assert_frame_equal(got, getattr(memory, table), check_exact=True)
    for table in IN_MEMORY:
        pd.testing.assert_frame_equal(getattr(spooled, table), getattr(memory, table))
    pd.testing.assert_frame_equal(spooled.summary(), memory.summary())
    assert spooled.report() == memory.report()


def test_the_shipped_captures_are_there() -> None:
    assert len(CAPTURES) >= 10, f"captures missing under {PROJECT_ROOT / 'captures'}"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_spooled_tables_equal_the_in_memory_ones(path: Path, tmp_path: Path) -> None:
    memory, spooled, spool = _both(path, tmp_path, 5, max_joinable_finished=4)
    _assert_same(memory, spooled, spool)
    spool.remove()
    assert not (tmp_path / "spool").exists()


def test_a_capture_of_many_blocks_with_packet_ids_reused(tmp_path: Path) -> None:
    """A reconnecting session's capture five times over (each copy reuses the packet ids:
    generations run across blocks) and 20,000 QoS 1 exchanges in one session."""
    five = concatenate_shifted(PROJECT_ROOT / "captures" / "gen-reconnect.pcap",
                               tmp_path / "x5.pcap", 5)
    memory, spooled, spool = _both(five, tmp_path / "a", 64, max_joinable_finished=32)
    assert spool.rows["exchanges"] > 10 * 64
    assert int(memory.exchanges["generation"].max()) > 0
    _assert_same(memory, spooled, spool)
    flows = tmp_path / "flows.pcap"
    write_qos1_flows(flows, 20_000)
    memory, spooled, spool = _both(flows, tmp_path / "b", 4096, max_joinable_finished=1000)
    assert spool.rows["exchanges"] == 20_000
    _assert_same(memory, spooled, spool)


def test_a_spooled_result_does_not_pretend_to_have_the_rows(tmp_path: Path) -> None:
    _, spooled, _ = _both(PROJECT_ROOT / "captures" / "gen-qos1.pcap", tmp_path, 8)
    assert spooled.result.sunk
    for table in ("exchanges", "deliveries", "packets", "tcp_retransmissions"):
        with pytest.raises(ValueError, match="sink"):
            getattr(spooled, table)


def test_a_sink_needs_the_detail_analysis(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="detail"):
        Correlator(AnalysisOptions(detail=False), sink=RowSpool(tmp_path, 8))


def test_a_spool_refuses_what_it_does_not_hold(tmp_path: Path) -> None:
    spool = RowSpool(tmp_path, 8)
    with pytest.raises(ValueError, match="no spooled table"):
        spool.take("sessions", np.zeros(1))
    with pytest.raises(ValueError, match="at least 1"):
        RowSpool(tmp_path, 0)


def test_generations_over_blocks_equal_the_whole_table() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    session = rng.integers(0, 4, n).astype(np.int32)
    direction = rng.integers(0, 2, n).astype(np.int8)
    packet_id = rng.integers(-1, 30, n).astype(np.int32)
    packet_id[packet_id == 0] = -1
    want = _generations(session, direction, packet_id)
    gens = Generations()
    cuts = [0, 1, 2, 700, 701, 2500, 4999, n]
    got = np.concatenate([gens.number(session[a:b], direction[a:b], packet_id[a:b])
                          for a, b in itertools.pairwise(cuts)])
    np.testing.assert_array_equal(got, want)
    assert want.max() > 10


class _ListSink:
    block_rows = 100

    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []

    def take(self, table: str, rows: Any) -> None:
        self.got.append((table, np.array(rows)))


def test_a_spilling_store_hands_every_row_once_in_order() -> None:
    sink = _ListSink()
    store = RowStore(PACKET_COLUMNS)
    store.spill_to(sink, "packets")
    for i in range(1234):
        store.append(i, 1, 0, 3, 1, 0, 0, i % 7, -1, 10, i, i, 0, -1, 5)
    assert store.rows <= sink.block_rows + store.batch_rows   # one chunk at most, and the batch
    store.spill()
    assert store.rows == 0 and store.spilled == 1234
    assert {t for t, _ in sink.got} == {"packets"}
    assert all(len(rows) <= sink.block_rows for _, rows in sink.got)
    ts = np.concatenate([rows["ts_ns"] for _, rows in sink.got])
    np.testing.assert_array_equal(ts, np.arange(1234))

"""A batch worker writes the large tables a block at a time (issue 14): the dataset it writes
equals, table for table, row for row and dtype for dtype, the tables of the in-memory analysis
written as a batch wrote them before (``add_capture_columns`` then ``to_parquet``); with blocks
as large as the tables, the files are the same bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.dataset.layout import (
    ANALYSIS_TABLES,
    DecoderOptions,
    add_capture_columns,
    capture_key,
    file_sha256,
    options_key,
    partition_dir,
)
from qosinspect.dataset.worker import Task, analyse_into
from qosinspect.report.output import write_table
from qosinspect.testing.concat import concatenate_shifted
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"
SHIPPED = ("gen-qos0.pcap", "gen-qos1.pcap", "gen-qos2.pcap", "gen-reconnect.pcap",
           "paho-v311-v5.pcap", "mosquitto-redelivery.pcap", "gen-stalled-acks.pcap")
TAGS = {"firmware": "3.7"}


def _task(root: Path, path: Path, options: DecoderOptions, block_rows: int) -> Task:
    sha = file_sha256(path)
    opts = options_key(options)
    return Task(root=str(root), path=str(path), capture=path.name, sha256=sha,
                key=capture_key(sha, opts), options_key=opts, size=path.stat().st_size,
                options=options, tags=TAGS, block_rows=block_rows)


def _in_memory(path: Path, options: DecoderOptions, folder: Path) -> dict[str, Path]:
    """Every table of the capture, written as the batch wrote them before the spool."""
    a = analyze_capture(path, ports=options.ports, detect_any_port=options.detect_any_port,
                        mqtt_version=options.mqtt_version,
                        options=dataclasses.replace(options.analysis, packets=options.packets))
    out = {}
    sha = file_sha256(path)
    for name in ANALYSIS_TABLES:
        df = a.summary().reset_index() if name == "summary" else getattr(a, name)
        out[name] = folder / f"{name}.parquet"
        write_table(add_capture_columns(df, path.name, sha, TAGS), "parquet", out[name])
    return out


def _check(path: Path, tmp: Path, block_rows: int, *, same_bytes: bool = False,
           **analysis: int) -> dict[str, int]:
    options = DecoderOptions(packets=True, analysis=AnalysisOptions(**analysis))
    task = _task(tmp / "ds", path, options, block_rows)
    outcome = analyse_into(task)
    assert outcome.error is None, outcome.error
    (tmp / "mem").mkdir()
    want = _in_memory(path, options, tmp / "mem")
    for name in ANALYSIS_TABLES:
        got_file = Path(partition_dir(task.root, name, task.key).path) / "part-0.parquet"
        got, expected = pd.read_parquet(got_file), pd.read_parquet(want[name])
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=name)
        assert outcome.rows[name] == len(expected)
        if same_bytes:
            assert got_file.read_bytes() == want[name].read_bytes(), name
    assert not list((tmp / "ds").rglob(".spool")), "the scratch rows were left behind"
    return dict(outcome.rows)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_worker_writes_the_in_memory_tables_block_by_block(name: str, tmp_path: Path
                                                              ) -> None:
    _check(CAPTURES / name, tmp_path, 5, max_joinable_finished=4)


@pytest.mark.parametrize("name", SHIPPED[:4])
def test_one_block_is_the_same_file(name: str, tmp_path: Path) -> None:
    _check(CAPTURES / name, tmp_path, 65_536, same_bytes=True)


def test_a_generated_capture_of_many_blocks(tmp_path: Path) -> None:
    """Generated traffic (the generator's reconnect scenario, a QoS 0/1/2 mix across a dropped
    connection) five times over, in blocks of 100 rows."""
    big = concatenate_shifted(CAPTURES / "gen-reconnect.pcap", tmp_path / "x5.pcap", 5)
    rows = _check(big, tmp_path, 100)
    assert rows["exchanges"] > 5 * 100 and rows["packets"] > 10 * 100, rows

"""``qosinspect batch`` on local processes: the tables equal the single-capture analysis,
failures are rows, runs are incremental, tags are columns; ``dataset.open`` eager and lazy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qosinspect import dataset
from qosinspect.dataset.layout import ANALYSIS_TABLES

from .conftest import CAPTURES, GOOD, Built, make_folder, run_cli

ADDED = ["capture", "capture_sha256", "tag_build", "tag_firmware", "tag_site"]


def test_exit_status_counts_the_failures_and_the_summary_says_what_happened(
        built: Built) -> None:
    assert built.exit_code == 2, built.stderr
    assert "8 captures: 6 analysed, 0 skipped" in built.stdout and "2 failed" in built.stdout
    assert "exchanges:" in built.stdout
    assert "garbage.pcap: failed:" in built.stderr
    assert "cut.pcap: read up to a defect:" in built.stderr
    assert "Traceback" not in built.stderr


def test_failures_table_has_the_error_of_each_bad_capture(built: Built) -> None:
    ds = dataset.open(built.root)
    f = ds.failures.set_index("capture")
    assert sorted(f.index) == ["cut.pcap", "garbage.pcap"]
    assert not f.loc["garbage.pcap", "partial"]
    assert "not a pcap or pcapng file" in f.loc["garbage.pcap", "error"]
    assert f.loc["cut.pcap", "partial"] and "truncated" in f.loc["cut.pcap", "error"]
    # the cut capture was analysed up to the defect; the garbage has no tables at all
    caps = ds.captures.set_index("capture")
    assert sorted(caps.index) == sorted(["cut.pcap", *GOOD])
    assert "truncated" in caps.loc["cut.pcap", "capture_error"]
    assert "garbage.pcap" not in set(ds.exchanges["capture"])
    assert (ds.exchanges["capture"] == "cut.pcap").sum() > 0


@pytest.mark.parametrize("table", [t for t in ANALYSIS_TABLES if t != "packets"])
def test_each_table_equals_the_single_capture_analysis(built: Built, single: dict[str, Any],
                                                       table: str) -> None:
    ds = dataset.open(built.root)
    df = ds[table]
    for name, analysis in single.items():
        want = (analysis.summary().reset_index() if table == "summary"
                else getattr(analysis, table)).reset_index(drop=True)
        got = df[df["capture"] == name].drop(columns=ADDED).reset_index(drop=True)
        assert list(got.columns) == list(want.columns)
        # declared dtypes kept (the categories of a category column are the union of all
        # captures', so they are compared as values)
        assert [str(t) for t in got.dtypes] == [str(t) for t in want.dtypes], name
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_categorical=False)


def test_capture_columns_and_tags(built: Built) -> None:
    ex = dataset.open(built.root).exchanges
    assert list(ex.columns[:5]) == ADDED
    assert all(str(ex[c].dtype) == "string" for c in ADDED)
    by = ex.groupby("capture", observed=True).first()
    assert by.loc["gen-qos2.pcap", "tag_firmware"] == "3.7"
    assert by.loc["gen-qos0.pcap", "tag_site"] == "lab"          # the CSV wins over --tag
    assert by.loc["gen-qos0.pcap", "tag_build"] == "42"          # --tag for every capture
    red = by.loc["nested/mosquitto-redelivery.pcap"]             # no CSV row
    assert pd.isna(red["tag_firmware"]) and red["tag_site"] == "default"
    sha = by.loc["gen-qos1.pcap", "capture_sha256"]
    import hashlib

    assert sha == hashlib.sha256((CAPTURES / "gen-qos1.pcap").read_bytes()).hexdigest()


def test_rows_come_in_the_order_of_the_capture_names(built: Built) -> None:
    ex = dataset.open(built.root).exchanges
    names = list(dict.fromkeys(ex["capture"]))
    assert names == sorted(names)


def test_open_lazy_computes_to_the_eager_tables(built: Built) -> None:
    eager = dataset.open(built.root)
    lazy = dataset.open(built.root, lazy=True)
    for table in ("exchanges", "connections", "reconnects", "summary", "failures"):
        got = lazy[table].compute().reset_index(drop=True)
        pd.testing.assert_frame_equal(got, eager[table])
    assert lazy.exchanges.npartitions == len(set(eager.exchanges["capture"]))
    assert len(eager.packets) == 0  # not asked for


def test_open_refuses_what_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        dataset.open(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a dataset"):
        dataset.open(tmp_path)
    (tmp_path / "exchanges").mkdir()
    with pytest.raises(KeyError, match="tables are"):
        dataset.open(tmp_path)["nope"]


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


def test_incremental_runs_skip_what_is_done_and_redo_on_force_or_new_options(
        tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("gen-qos0.pcap", "gen-qos1.pcap"):
        shutil.copy(CAPTURES / name, folder / name)
    root = tmp_path / "ds"
    code, out, _ = run_cli("batch", str(folder), "-o", str(root), "-j", "1")
    assert code == 0 and "2 analysed, 0 skipped" in out
    before = _mtimes(root)
    code, out, _ = run_cli("batch", str(folder), "-o", str(root), "-j", "1")
    assert code == 0 and "0 analysed, 2 skipped" in out
    assert _mtimes(root) == before                        # nothing written again
    shutil.copy(CAPTURES / "gen-qos2.pcap", folder / "gen-qos2.pcap")
    shutil.copy(CAPTURES / "gen-qos0.pcap", folder / "copy-of-qos0.pcap")  # same bytes
    code, out, _ = run_cli("batch", str(folder), "-o", str(root), "-j", "1")
    assert code == 0 and "1 analysed, 3 skipped" in out
    code, out, _ = run_cli("batch", str(folder), "-o", str(root), "-j", "1", "--force")
    assert code == 0 and "3 analysed, 1 skipped" in out
    assert len(dataset.open(root).captures) == 3
    code, out, _ = run_cli("batch", str(folder), "-o", str(root), "-j", "1", "-p", "18830")
    assert code == 0 and "3 analysed" in out               # other options: other partitions
    caps = dataset.open(root).captures
    assert len(caps) == 6 and caps["options_key"].nunique() == 2
    assert not (root / ".incoming").exists()


def test_a_capture_that_no_longer_fails_loses_its_failure_row(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "in")
    root = tmp_path / "ds"
    code, _, _ = run_cli("batch", str(folder / "garbage.pcap"), "-o", str(root), "-j", "1")
    assert code == 1 and len(dataset.open(root).failures) == 1
    code, out, _ = run_cli("batch", str(folder / "garbage.pcap"), "-o", str(root), "-j", "1")
    assert code == 1 and "1 failed" in out                 # a failure is tried again
    assert len(dataset.open(root).failures) == 1


def test_packets_table_on_request(tmp_path: Path, single: dict[str, Any]) -> None:
    root = tmp_path / "ds"
    code, _, _ = run_cli("batch", str(CAPTURES / "gen-qos1.pcap"), "-o", str(root), "-j", "1",
                         "--packets")
    assert code == 0
    assert len(dataset.open(root).packets) > len(single["gen-qos1.pcap"].exchanges)


def test_globs_name_captures_relative_to_their_fixed_part(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "in")
    root = tmp_path / "ds"
    code, out, _ = run_cli("batch", f"{folder}/**/mosquitto-*.pcap", str(folder / "gen-qos0.pcap"),
                           "-o", str(root), "-j", "1")
    assert code == 0, out
    assert sorted(dataset.open(root).captures["capture"]) == [
        "gen-qos0.pcap", "nested/mosquitto-redelivery.pcap"]


@pytest.mark.parametrize(("args", "message"), [
    (["missing-folder"], "missing-folder: no capture there"),
    (["CAPS", "--tag", "no-equals"], "a tag is NAME=VALUE"),
    (["CAPS", "--tag", "bad name=1"], "a tag is NAME=VALUE"),
    (["CAPS", "--tags-csv", "TAGS"], "needs a 'capture' column"),
])
def test_bad_arguments_are_messages(tmp_path: Path, args: list[str], message: str) -> None:
    tags = tmp_path / "tags.csv"
    tags.write_text("file,firmware\na.pcap,1\n")
    args = [str(CAPTURES / "gen-qos0.pcap") if a == "CAPS" else str(tags) if a == "TAGS" else a
            for a in args]
    code, _, err = run_cli("batch", *args, "-o", str(tmp_path / "ds"))
    assert code in (1, 2) and message in err and "Traceback" not in err
    assert not (tmp_path / "ds" / "captures").exists()

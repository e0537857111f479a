"""``batch``, ``dataset.open`` and ``query`` on ``s3://`` URLs through fsspec (s3fs), against a
real S3 endpoint on 127.0.0.1 (moto's server): captures read from a bucket, the dataset written
to a bucket by the worker processes, and what is read back equals the local run's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from qosinspect import dataset
from qosinspect.dataset.layout import TABLES
from qosinspect.dataset.query import query
from qosinspect.testing.s3server import S3_ENV, s3_server

from .conftest import Built, run_cli


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """An S3 endpoint with the built folder's captures uploaded to ``s3://runs/in/``; the
    environment points every process (the pool's workers too) at it."""
    import fsspec
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # each knows the endpoint it was made with
    with s3_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        for name, value in S3_ENV.items():
            monkeypatch.setenv(name, value)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("runs")
        yield fs
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.timeout(240)
def test_a_batch_from_and_to_s3_equals_the_local_one(built: Built, s3: object,
                                                     tmp_path: Path) -> None:
    fs = s3
    for f in sorted(built.folder.rglob("*")):
        if f.is_file():
            fs.put_file(str(f), "runs/in/" + f.relative_to(built.folder).as_posix())  # type: ignore[attr-defined]
    tags = str(built.folder.parent / "tags.csv")
    args = ["batch", "s3://runs/in", "-o", "s3://runs/ds", "--jobs", "2", "--tag",
            "site=default", "--tag", "build=42", "--tags-csv", tags]
    code, out, err = run_cli(*args)
    assert code == 2, err                               # the same two damaged captures
    assert fs.isdir("runs/ds/exchanges")  # type: ignore[attr-defined]
    assert not any(".incoming" in p for p in fs.find("runs/ds"))  # type: ignore[attr-defined]

    local, remote = dataset.open(built.root), dataset.open("s3://runs/ds")
    for table in TABLES:
        want, got = local[table], remote[table]
        for col in ("capture_error", "error"):  # each names the capture as it was given
            if col in want:
                want[col] = want[col].str.replace(str(built.folder), "s3://runs/in")
        assert [str(t) for t in got.dtypes] == [str(t) for t in want.dtypes], table
        pd.testing.assert_frame_equal(got, want, obj=table)
    assert len(remote.exchanges) > 0 and len(remote.failures) == 2
    lazy = dataset.open("s3://runs/ds", lazy=True).exchanges.compute()
    pd.testing.assert_frame_equal(lazy.reset_index(drop=True), local.exchanges)

    sql = "SELECT qos, count(*) AS n FROM exchanges GROUP BY qos ORDER BY qos"
    pd.testing.assert_frame_equal(query("s3://runs/ds", sql), query(built.root, sql))

    # incremental: what has a captures row is skipped and left as it is; the capture that
    # could not be read at all is tried again (as in a local dataset)
    before = {p: fs.info(p)["LastModified"]  # type: ignore[attr-defined]
              for p in fs.find("runs/ds")}  # type: ignore[attr-defined]
    code, out, err = run_cli(*args)
    assert code == 1, err
    assert "0 analysed, 7 skipped" in out and "1 failed" in out, out
    after = {p: fs.info(p)["LastModified"]  # type: ignore[attr-defined]
             for p in fs.find("runs/ds")}  # type: ignore[attr-defined]
    assert set(after) == set(before)
    changed = {p for p in before if after[p] != before[p]}
    assert all(p.startswith("runs/ds/failures/") for p in changed), changed


def test_a_url_that_names_nothing_is_an_error(s3: object) -> None:
    code, _, err = run_cli("batch", "s3://runs/nothing-here", "-o", "s3://runs/ds")
    assert code != 0
    assert "s3://runs/nothing-here: no capture there" in err


def test_a_store_that_cannot_be_reached_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    from qosinspect.testing.tools import free_port

    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run_cli("batch", "s3://runs/in", "-o", "s3://runs/ds")
    assert code == 1
    assert err.startswith("Error: s3://runs/in: ") and "Traceback" not in err, err
    s3fs.S3FileSystem.clear_instance_cache()

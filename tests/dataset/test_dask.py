"""``batch --dask`` on a real cluster (``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1) writes the dataset the local process pool writes: same rows, same dtypes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from qosinspect import dataset
from qosinspect.dataset.layout import TABLES
from qosinspect.testing.daskcluster import dask_cluster

from .conftest import Built, run_cli


@pytest.mark.timeout(180)
def test_dask_cluster_writes_the_dataset_the_local_pool_writes(built: Built,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "dask-ds"
    with dask_cluster(2) as address:
        code, out, err = run_cli("batch", str(built.folder), "-o", str(root), "--dask", address,
                                 "--tag", "site=default", "--tag", "build=42",
                                 "--tags-csv", str(built.folder.parent / "tags.csv"))
    assert code == 2, err                               # the same two failures
    assert f"on Dask cluster {address}" in out
    local, remote = dataset.open(built.root), dataset.open(root)
    for table in TABLES:
        want, got = local[table], remote[table]
        assert [str(t) for t in got.dtypes] == [str(t) for t in want.dtypes], table
        pd.testing.assert_frame_equal(got, want, obj=table)
    assert len(remote.exchanges) > 0 and len(remote.failures) == 2


def test_an_unreachable_cluster_is_a_message(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from qosinspect.dataset import runner
    from qosinspect.testing.tools import free_port

    monkeypatch.setattr(runner, "CONNECT_TIMEOUT", "1s")  # nothing listens: no need to wait
    address = f"tcp://127.0.0.1:{free_port()}"
    capture = Path(__file__).parents[2] / "captures" / "gen-qos0.pcap"
    code, _, err = run_cli("batch", str(capture),
                           "-o", str(tmp_path / "ds"), "--dask", address)
    assert code == 1 and f"--dask {address}" in err and "Traceback" not in err

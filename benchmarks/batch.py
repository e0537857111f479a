"""Batch benchmark: ``qosinspect batch`` over many captures serially, on the local process pool
and on a local Dask cluster of two worker processes, same run, same captures.

The captures: the shipped ``captures/*.pcap`` (2 to 70 kB, made by the project's generator and
by real peers: mosquitto, paho; every QoS, reconnections, WebSocket, TLS, two brokers), cycled
to ``--count`` files (200 by default), each copy shifted in time by a whole number of hours
(its record timestamps rewritten) so that every file has its own bytes and sha256, as
captures of separate runs do (the batch analyses the same bytes only once).

Three runs into three fresh datasets, through the library (``plan`` + ``run_batch``, what the
command does):

* ``serial``: ``jobs=1``, every capture in the benchmark's own process, one after the other;
* ``pool``: ``jobs=None``, a ``ProcessPoolExecutor`` with one process per core;
* ``dask``: ``dask scheduler`` and two single-threaded ``dask worker`` processes on 127.0.0.1
  (:func:`qosinspect.testing.daskcluster.dask_cluster`), started before the clock runs.

Printed: the core count and the load average (the machine may be shared: with more runnable
processes than cores, wall time measures the competition), captures/s and the speed-up over
serial of each, the CPU seconds each spent (the benchmark's process and its children, or the
Dask workers' own), and that the three datasets hold the same rows per table. On an idle 2-core
machine expect about 1.8x for the pool and the cluster (the work is per capture and
independent; what is lost is starting the processes, shipping each task and writing its
files). The exit status is 0 either way: the figures are
the result.

    python benchmarks/batch.py              # 200 captures
    python benchmarks/batch.py --count 50   # fewer
    python benchmarks/batch.py --json       # one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qosinspect.dataset import DecoderOptions, expand_captures, open_dataset, plan  # noqa: E402
from qosinspect.dataset.layout import ANALYSIS_TABLES  # noqa: E402
from qosinspect.dataset.runner import BatchResult, run_batch  # noqa: E402
from qosinspect.testing.daskcluster import dask_cluster  # noqa: E402

#: pcap magic numbers, as read little-endian: microsecond and nanosecond timestamps.
PCAP_MAGICS = {0xA1B2C3D4, 0xA1B23C4D}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def shifted(data: bytes, seconds: int) -> bytes:
    """A little-endian classic pcap with every record's timestamp ``seconds`` later."""
    out = bytearray(data)
    pos = 24
    while pos + 16 <= len(out):
        ts_sec, _, incl, _ = struct.unpack_from("<IIII", out, pos)
        struct.pack_into("<I", out, pos, ts_sec + seconds)
        pos += 16 + incl
    return bytes(out)


def make_captures(folder: Path, count: int) -> int:
    """``count`` distinct captures in ``folder`` from the shipped ones; their total bytes."""
    sources = [p for p in sorted((ROOT / "captures").glob("*.pcap"))
               if struct.unpack("<I", p.read_bytes()[:4])[0] in PCAP_MAGICS]
    total = 0
    for i in range(count):
        src = sources[i % len(sources)]
        data = shifted(src.read_bytes(), 3600 * (i // len(sources) + 1))
        (folder / f"{i:04d}-{src.name}").write_bytes(data)
        total += len(data)
    return total


def _cpu_here() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _cpu_workers(address: str) -> float:
    """The CPU seconds the Dask workers' processes have used so far."""
    from distributed import Client

    def usage() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    with Client(address) as client:
        return sum(client.run(usage).values())


def run(folder: Path, root: Path, *, jobs: int | None = None, dask: str | None = None
        ) -> tuple[BatchResult, float]:
    """One batch of every capture in ``folder`` into the fresh dataset ``root``; its result
    and the CPU seconds it cost."""
    tasks, skipped = plan(expand_captures([str(folder)]), root, DecoderOptions())
    assert not skipped, "a fresh dataset skips nothing"
    cpu0 = _cpu_workers(dask) if dask else _cpu_here()
    result = run_batch(tasks, jobs=jobs, dask=dask)
    cpu = (_cpu_workers(dask) if dask else _cpu_here()) - cpu0
    failed = result.failed
    assert not failed, f"{len(failed)} captures failed: {failed[0].error}"
    return result, cpu


def rows_per_table(root: Path) -> dict[str, int]:
    ds = open_dataset(root)
    return {t: len(ds[t]) for t in ANALYSIS_TABLES if t != "packets"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200, help="captures (default 200)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="qosinspect-bench-batch-"))
    try:
        folder = work / "captures"
        folder.mkdir()
        total = make_captures(folder, args.count)
        log(f"{args.count} captures, {total / 1e6:.1f} MB, {cores} cores")
        load = os.getloadavg()[0]
        results: dict[str, tuple[BatchResult, float]] = {}
        log("serial ...")
        results["serial"] = run(folder, work / "serial", jobs=1)
        log("local pool ...")
        results["pool"] = run(folder, work / "pool")
        log("Dask cluster of 2 workers ...")
        with dask_cluster(2) as address:
            results["dask"] = run(folder, work / "dask", dask=address)
        load_end = os.getloadavg()[0]
        rows = {name: rows_per_table(work / name) for name in results}
        same = rows["serial"] == rows["pool"] == rows["dask"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    serial = results["serial"][0].seconds
    out = {
        "captures": args.count, "bytes": total, "cores": cores, "same_rows": same,
        "load_average": [round(load, 2), round(load_end, 2)], "rows": rows["serial"],
        "runs": {name: {"workers": r.workers, "seconds": round(r.seconds, 3),
                        "cpu_seconds": round(cpu, 3),
                        "captures_per_s": round(args.count / r.seconds, 2),
                        "speedup": round(serial / r.seconds, 2)}
                 for name, (r, cpu) in results.items()},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.count} captures ({total / 1e6:.1f} MB) on {cores} cores, load average "
          f"{load:.1f} -> {load_end:.1f}; same rows in the three datasets: {same}")
    print(f"{'run':8} {'workers':>7} {'seconds':>8} {'cpu s':>7} {'captures/s':>11} "
          f"{'speed-up':>9}")
    for name, r in out["runs"].items():  # type: ignore[attr-defined]
        print(f"{name:8} {r['workers']:>7} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} "
              f"{r['captures_per_s']:>11.1f} {r['speedup']:>8.2f}x")


if __name__ == "__main__":
    main()

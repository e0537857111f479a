"""Batch benchmark: ``qosinspect batch`` over many captures serially, on the local process pool
and on a local Dask cluster of two worker processes, same run, same captures.

The captures (``--source``):

* ``generated`` (default): ``--count`` (200) fresh runs of the project's generator
  (``qosinspect generate``, built-in broker, fault proxy, its synthetic capture of the
  proxy's traffic), each its own scenario drawn from ``--seed``: 1 to 10 topics, 1 to 40 Hz
  per topic, QoS 0, 1 and 2 mixed, 0.5 to 4 s of publishing, one in four with a forced
  reconnection, one in four with delayed acknowledgements; so the sizes are mixed (from a few
  kB to a few hundred), as a team's test runs are. Made two at a time, once, and cached under
  ``out/bench/batch-generated/`` (a few minutes the first time).
* ``shipped``: the shipped ``captures/*.pcap`` (2 to 70 kB, made by the generator and by real
  peers: mosquitto, paho; every QoS, reconnections, WebSocket, TLS, two brokers), cycled to
  ``--count`` files, each copy shifted in time by a whole number of hours (its record
  timestamps rewritten) so that every file has its own bytes and sha256, as captures of
  separate runs do (the batch analyses the same bytes only once).

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

    python benchmarks/batch.py              # 200 generated captures
    python benchmarks/batch.py --source shipped
    python benchmarks/batch.py --count 50   # fewer
    python benchmarks/batch.py --json       # one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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


_SCENARIO = """name = "bench-{i}"
duration = {duration}
{faults}
[[publishers]]
name = "pub"
{topics}
[[subscribers]]
name = "sub"
filters = ["bench/#"]
qos = {sub_qos}
"""
_TOPIC = """[[publishers.topics]]
topic = "bench/t{k}"
qos = {qos}
rate = {rate}
"""
_FAULTS = {"reconnect": """[[faults]]
kind = "cut"
client = "pub"
at = {at}
""", "slow-acks": """[[faults]]
kind = "delay"
client = "pub"
direction = "b2c"
delay = 0.003
"""}


def scenario(i: int, rng: random.Random) -> str:
    """The ``i``-th benchmark scenario (see the module docstring)."""
    duration = round(rng.uniform(0.5, 4.0), 2)
    topics = "".join(_TOPIC.format(k=k, qos=rng.choice((0, 1, 2)),
                                   rate=round(rng.uniform(1.0, 40.0), 1))
                     for k in range(rng.randint(1, 10)))
    faults = ""
    draw = rng.random()
    if draw < 0.25:
        faults = _FAULTS["reconnect"].format(at=round(duration / 2, 2))
    elif draw < 0.5:
        faults = _FAULTS["slow-acks"]
    return _SCENARIO.format(i=i, duration=duration, faults=faults, topics=topics,
                            sub_qos=rng.choice((0, 1, 2)))


def generate_captures(folder: Path, count: int, seed: int) -> int:
    """``count`` generator runs in ``folder`` (cached under ``out/bench/batch-generated/``);
    their total bytes."""
    cache = ROOT / "out" / "bench" / "batch-generated" / f"seed{seed}"
    cache.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    program = str(Path(sys.executable).with_name("qosinspect"))
    todo: list[tuple[Path, Path]] = []
    for i in range(count):
        toml = cache / f"{i:04d}.toml"
        text = scenario(i, rng)
        capture = cache / f"{i:04d}.pcapng"
        if not capture.exists() or not toml.exists() or toml.read_text() != text:
            toml.write_text(text)
            todo.append((toml, capture))
    if todo:
        log(f"generating {len(todo)} captures (cached in {cache}) ...")

    def one(job: tuple[Path, Path]) -> None:
        toml, capture = job
        tmp = capture.with_suffix(".part.pcapng")
        subprocess.run([program, "generate", str(toml), "--port", "0", "--capture", str(tmp),
                        "--capture-method", "tap", "-q", "--seed", toml.stem],
                       check=True, timeout=120, capture_output=True)
        tmp.replace(capture)
        for extra in cache.glob(f"{tmp.name}*"):
            extra.unlink()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, todo))
    total = 0
    for i in range(count):
        src = cache / f"{i:04d}.pcapng"
        shutil.copy(src, folder / src.name)
        total += src.stat().st_size
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
    ap.add_argument("--source", choices=("generated", "shipped"), default="generated",
                    help="fresh generator runs (default) or the shipped captures cycled")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated scenarios")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="qosinspect-bench-batch-"))
    try:
        folder = work / "captures"
        folder.mkdir()
        total = (generate_captures(folder, args.count, args.seed) if args.source == "generated"
                 else make_captures(folder, args.count))
        sizes = sorted(p.stat().st_size for p in folder.iterdir())
        log(f"{args.count} {args.source} captures, {total / 1e6:.1f} MB (from "
            f"{sizes[0] / 1e3:.1f} to {sizes[-1] / 1e3:.1f} kB), {cores} cores")
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
        "captures": args.count, "source": args.source, "bytes": total,
        "size_kb": {"min": round(sizes[0] / 1e3, 1),
                    "median": round(sizes[len(sizes) // 2] / 1e3, 1),
                    "max": round(sizes[-1] / 1e3, 1)},
        "cores": cores, "same_rows": same,
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
    print(f"{args.count} {args.source} captures ({total / 1e6:.1f} MB, {sizes[0] / 1e3:.1f} to "
          f"{sizes[-1] / 1e3:.1f} kB) on {cores} cores, load average "
          f"{load:.1f} -> {load_end:.1f}; same rows in the three datasets: {same}")
    print(f"{'run':8} {'workers':>7} {'seconds':>8} {'cpu s':>7} {'captures/s':>11} "
          f"{'speed-up':>9}")
    for name, r in out["runs"].items():  # type: ignore[attr-defined]
        print(f"{name:8} {r['workers']:>7} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} "
              f"{r['captures_per_s']:>11.1f} {r['speedup']:>8.2f}x")


if __name__ == "__main__":
    main()

"""``qosinspect watch`` benchmark: how many packets per second it keeps up with from a pipe, where
it starts to lag, what dumpcap takes on the same pipe, and its peak RSS over a long feed.

The capture is the large one of the other benchmarks (``../shared/bench/make_capture.sh large``,
cached as ``out/bench/mqtt_large.pcap``) or ``--capture FILE --port N`` (a pcap). Every program
runs as its own process (wall time, CPU seconds and peak RSS from ``wait4``), all in one run:

* **Unpaced.** ``watch -`` reading the capture from a pipe as fast as ``cat`` writes it (a full
  pipe makes the writer wait, so this is the most it takes); ``report`` on the file, the same
  analysis not live (the peer of the ratio); ``cat`` alone; ``watch`` on the capture's first
  frame only (its start-up cost, taken off the CPU figures "after start-up").
* **Paced** (``--rates``, packets per second): the capture's records written into the pipe on
  a schedule (record ``i`` at ``i / rate`` s after watch said ``start``), for ``--seconds`` at
  each rate (or the whole capture). watch prints a snapshot every second of packet time; the
  snapshot stamped with the time of record ``i`` and read at wall time ``w`` is ``w - i / rate``
  late (``lag_s``: what the pipe held, plus what watch had not yet walked). watch keeps up with
  a rate when its lag at the end of the feed is under ``LAG_LIMIT_S`` and the writer was never
  held back by a full pipe for more than that (``feed_behind_s``). ``lag_starts_at`` is the
  lowest rate it did not keep up with.
* **dumpcap's ceiling.** ``dumpcap -i - -w /dev/null`` reading the same pipe (Wireshark's
  capture engine parsing pcap records from a pipe and writing pcapng): unpaced (packets per
  second of wall time and of its CPU) and at each paced rate (whether it kept up). This is what
  dumpcap's own record handling takes on this machine, not what the kernel can hand it from an
  interface (a loopback replay at these rates needs a packet generator this machine lacks).
* **RSS over a long feed** (``--rss-packets``, 10 million by default): the capture written
  again and again, each pass shifted in time after the one before (its TCP connections start
  anew with their SYNs), unpaced; watch's RSS sampled every second and its peak.
* **RSS with connection churn** (``--churn-connections``, e.g. ``100000,200000``): that many
  short connections 100 ms apart, each of its own client id (a handshake, CONNECT, a QoS 1
  PUBLISH and its PUBACK, DISCONNECT, FIN: ``qosinspect.testing.stresscaps``), fed to
  ``watch -``: what a long watch keeps of connections and sessions that came and went (they are
  released an hour of packet time after they ended, so the peak should not grow with the count).

The core count and the load average are printed: on a shared machine wall times stretch, so the
CPU figures (packets per CPU second of watch) say what one core takes. ``--json`` prints one
JSON object.

    python benchmarks/watch.py --capture out/bench/mqtt_large.pcap --json
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from _capture import argument_parser, ensure_capture, log, qosinspect_command

#: A rate is kept up with when the lag at the end of the feed is under this (seconds).
LAG_LIMIT_S = 0.5
#: Bytes per write of the unpaced feeds.
CHUNK = 1 << 16
_US, _NS = 0xA1B2C3D4, 0xA1B23C4D


@dataclass
class Capture:
    """The capture mapped, with where each record starts and its time."""

    path: Path
    port: int
    buf: mmap.mmap
    head: bytes
    offsets: np.ndarray     # int64, record starts, one past the last record at the end
    ts_ns: np.ndarray       # int64 per record
    span_s: int = 0         # whole seconds from the first record to the last, plus one

    @property
    def frames(self) -> int:
        return len(self.ts_ns)

    def body(self, start: int, stop: int) -> memoryview:
        """The bytes of records ``start`` .. ``stop - 1``."""
        return memoryview(self.buf)[int(self.offsets[start]):int(self.offsets[stop])]


def load(path: Path, port: int) -> Capture:
    """Map a pcap and index its records (the frames of a cut last record are left out)."""
    f = path.open("rb")
    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    f.close()
    (magic,) = struct.unpack_from("<I", buf, 0)
    if magic not in (_US, _NS):
        sys.exit(f"{path}: the paced feed takes a little-endian pcap")
    frac = 1000 if magic == _US else 1
    offsets, stamps = [], []
    off, end = 24, len(buf)
    unpack = struct.Struct("<IIII").unpack_from
    while off + 16 <= end:
        sec, sub, caplen, _ = unpack(buf, off)
        if off + 16 + caplen > end:
            break
        offsets.append(off)
        stamps.append(sec * 1_000_000_000 + sub * frac)
        off += 16 + caplen
    offsets.append(off)
    ts = np.array(stamps, dtype=np.int64)
    span = int((ts.max() - ts.min()) // 1_000_000_000) + 1
    return Capture(path, port, buf, bytes(buf[:24]), np.array(offsets, dtype=np.int64), ts, span)


# -- the processes ---------------------------------------------------------------------------

def watch_command(exe: str, port: int) -> list[str]:
    return [exe, "watch", "-", "-p", str(port), "--format", "jsonl", "--report-format",
            "json", "--report", os.devnull]


def dumpcap_command() -> list[str]:
    return ["dumpcap", "-i", "-", "-w", os.devnull, "-q"]


#: Runs ``argv[2:]`` as its child and writes the child's exit status, CPU seconds and peak RSS
#: (KiB) to ``argv[1]``. A process forked from this benchmark, which maps the capture, would
#: start with its peak RSS in ``ru_maxrss`` (Linux carries the old memory's high-water mark
#: across exec); one forked from this small launcher starts from the launcher's.
LAUNCHER = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss], f)
"""


@dataclass
class Measured:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    status: int = 0


class Run:
    """``cmd`` started through :data:`LAUNCHER`; :meth:`reap` waits for it and measures."""

    def __init__(self, cmd: list[str], **popen: Any) -> None:
        fd, self.result = tempfile.mkstemp(prefix="qosinspect-bench-", suffix=".json")
        os.close(fd)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, self.result, *cmd],
                                     **popen)

    def child(self) -> int | None:
        """The measured process (the launcher's child), once it runs."""
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        return int(kids.split()[0]) if kids.split() else None

    def reap(self) -> Measured:
        self.proc.wait()
        wall = time.perf_counter() - self.t0
        try:
            status, cpu, rss = json.loads(Path(self.result).read_text())
        finally:
            os.unlink(self.result)
        return Measured(wall, cpu, rss / 1024, status)


@dataclass
class Lines:
    """watch's standard output read by a thread: (wall time, snapshot packet time) pairs, and
    an event set at its ``start`` line."""

    started: threading.Event = field(default_factory=threading.Event)
    snapshots: list[tuple[float, int]] = field(default_factory=list)

    def read(self, out: IO[bytes]) -> None:
        for line in out:
            now = time.perf_counter()
            item = json.loads(line)
            if item.get("type") == "start":
                self.started.set()
            elif item.get("type") == "snapshot" and item.get("ts_ns") is not None:
                self.snapshots.append((now, item["ts_ns"]))
        self.started.set()


def feed_paced(fd: int, cap: Capture, count: int, rate: float, t0: float) -> float:
    """Write records 0 .. count - 1 after the file header, record ``i`` at ``t0 + i / rate``;
    returns the longest the writer was held behind that schedule (seconds)."""
    behind = 0.0
    i = 0
    while i < count:
        now = time.perf_counter()
        due = min(count, int((now - t0) * rate) + 1)
        if due <= i:
            time.sleep(min(0.002, (i - (now - t0) * rate) / rate))
            continue
        behind = max(behind, now - t0 - i / rate)
        os.write(fd, cap.body(i, due))
        i = due
    return max(behind, time.perf_counter() - t0 - count / rate)


def paced(cmd: list[str], cap: Capture, rate: float, seconds: float, *, lines: bool
          ) -> dict[str, Any]:
    """``cmd`` reading the pipe fed at ``rate`` packets/s for ``seconds`` (or the capture)."""
    count = min(cap.frames, max(1, int(rate * seconds)))
    r, w = os.pipe()
    run = Run(cmd, stdin=r, stdout=subprocess.PIPE if lines else subprocess.DEVNULL,
              stderr=subprocess.DEVNULL)
    proc, t_start = run.proc, run.t0
    os.close(r)
    out = Lines()
    reader = None
    if lines:
        assert proc.stdout is not None
        reader = threading.Thread(target=out.read, args=(proc.stdout,), daemon=True)
        reader.start()
    os.write(w, cap.head)
    if lines:
        out.started.wait(60)        # start-up (imports) is not the feed's time
    t0 = time.perf_counter()
    behind = feed_paced(w, cap, count, rate, t0)
    t_fed = time.perf_counter()
    os.close(w)
    m = run.reap()
    if reader is not None:
        reader.join(10)
    result: dict[str, Any] = {
        "rate": rate, "packets": count, "feed_s": round(t_fed - t0, 3),
        "fed_per_s": round(count / (t_fed - t0)), "feed_behind_s": round(behind, 3),
        "cpu_s": round(m.cpu_s, 3), "wall_s": round(m.wall_s, 3),
        "peak_rss_mb": round(m.peak_rss_mb, 1), "status": m.status}
    if lines:
        lags = [wall - t0 - int(np.searchsorted(cap.ts_ns[:count], ts)) / rate
                for wall, ts in out.snapshots]
        end_lag = lags[-1] if lags else None
        result.update(snapshots=len(lags), lag_max_s=round(max(lags), 3) if lags else None,
                      lag_end_s=None if end_lag is None else round(end_lag, 3),
                      done_after_feed_s=round(m.wall_s - (t_fed - t_start), 3))
        result["keeps_up"] = bool(end_lag is not None and end_lag < LAG_LIMIT_S
                                  and behind < LAG_LIMIT_S and m.status == 0)
    else:
        result["keeps_up"] = bool(behind < LAG_LIMIT_S and m.status == 0)
    return result


def unpaced(cmd: list[str], chunks: Iterator[bytes | memoryview],
            sample: list[tuple[float, float]] | None = None) -> Measured:
    """``cmd`` reading a pipe written as fast as it takes it; RSS sampled once a second into
    ``sample`` (seconds since start, MB) when given."""
    r, w = os.pipe()
    run = Run(cmd, stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(r)
    stop = threading.Event()

    def sampler() -> None:
        pid = None
        while not stop.wait(1.0):
            pid = pid or run.child()
            try:
                text = Path(f"/proc/{pid}/status").read_text() if pid else ""
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    assert sample is not None
                    sample.append((time.perf_counter() - run.t0, int(line.split()[1]) / 1024))

    thread = threading.Thread(target=sampler, daemon=True) if sample is not None else None
    if thread is not None:
        thread.start()
    try:
        for chunk in chunks:
            os.write(w, chunk)
    except BrokenPipeError:
        pass
    finally:
        os.close(w)
    m = run.reap()
    stop.set()
    if thread is not None:
        thread.join(5)
    return m


def whole(cap: Capture, frames: int | None = None) -> Iterator[bytes | memoryview]:
    yield cap.head
    body = cap.body(0, cap.frames if frames is None else frames)
    for i in range(0, len(body), CHUNK):
        yield body[i:i + CHUNK]


def repeated(cap: Capture, packets: int) -> Iterator[bytes | memoryview]:
    """The capture again and again up to ``packets`` records, each pass ``span_s`` seconds
    after the one before (the seconds field of every record header moved)."""
    yield cap.head
    base = int(cap.offsets[0])
    body = np.frombuffer(cap.body(0, cap.frames), dtype=np.uint8).copy()
    sec_at = (cap.offsets[:-1] - base).astype(np.int64)
    secs = (body[sec_at].astype(np.uint32) | body[sec_at + 1].astype(np.uint32) << 8
            | body[sec_at + 2].astype(np.uint32) << 16 | body[sec_at + 3].astype(np.uint32) << 24)
    left = packets
    shift = 0
    while left > 0:
        if shift:
            moved = secs + np.uint32(shift)
            for k in range(4):
                body[sec_at + k] = (moved >> np.uint32(8 * k)).astype(np.uint8)
        n = min(left, cap.frames)
        end = int(cap.offsets[n] - base)
        view = memoryview(body)[:end]
        for i in range(0, end, CHUNK):
            yield view[i:i + CHUNK]
        left -= n
        shift += cap.span_s + 1


# -- the benchmark ---------------------------------------------------------------------------

def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--rates", default="50000,100000,200000,400000",
                    help="packets per second of the paced feeds (comma-separated)")
    ap.add_argument("--seconds", type=float, default=4.0,
                    help="seconds of feed at each rate (at most the whole capture)")
    ap.add_argument("--rss-packets", type=int, default=10_000_000,
                    help="packets of the long feed whose RSS is measured (0: none)")
    ap.add_argument("--churn-connections", default="",
                    help="connection counts of the churn feeds (comma-separated; '': none)")
    args = ap.parse_args()
    path, port = ensure_capture(args)
    cap = load(path, port)
    exe = qosinspect_command()
    env = {"QOSINSPECT_PURE": "1"} if args.pure else None
    if env:
        os.environ.update(env)
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0))
    log(f"{path}: {cap.frames:,} frames, port {port}; {cores} cores ({usable} usable), "
        f"load average {os.getloadavg()[0]:.1f}")
    wcmd = watch_command(exe, port)
    out: dict[str, Any] = {"capture": str(path), "frames": cap.frames, "cores": cores,
                           "cores_usable": usable, "load_avg_start": round(os.getloadavg()[0], 2)}

    # unpaced: watch, its start-up, report on the file, cat, dumpcap
    log("unpaced: watch -, watch on one frame (start-up), report FILE, cat, dumpcap -i -")
    w = unpaced(wcmd, whole(cap))
    s = unpaced(wcmd, whole(cap, 1))
    rep = Run([exe, "report", "--format", "json", "-p", str(port), str(path)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).reap()
    cat = Run(["cat", str(path)], stdout=subprocess.DEVNULL).reap()
    d = unpaced(dumpcap_command(), whole(cap))
    if w.status or rep.status or s.status or d.status:
        sys.exit(f"a command failed: watch {w.status}, report {rep.status}, start-up "
                 f"{s.status}, dumpcap {d.status}")
    after = max(w.cpu_s - s.cpu_s, 1e-9)
    out["unpaced"] = {
        "watch_s": round(w.wall_s, 3), "watch_cpu_s": round(w.cpu_s, 3),
        "watch_startup_cpu_s": round(s.cpu_s, 3),
        "watch_frames_per_s": round(cap.frames / w.wall_s),
        "watch_frames_per_cpu_s": round(cap.frames / w.cpu_s),
        "watch_frames_per_cpu_s_after_startup": round(cap.frames / after),
        "watch_peak_rss_mb": round(w.peak_rss_mb, 1),
        "report_s": round(rep.wall_s, 3), "report_cpu_s": round(rep.cpu_s, 3),
        "report_peak_rss_mb": round(rep.peak_rss_mb, 1),
        "watch_vs_report_cpu": round(rep.cpu_s / w.cpu_s, 3),
        "cat_s": round(cat.wall_s, 3),
        "dumpcap_s": round(d.wall_s, 3), "dumpcap_cpu_s": round(d.cpu_s, 3),
        "dumpcap_frames_per_s": round(cap.frames / d.wall_s),
        "dumpcap_frames_per_cpu_s": round(cap.frames / max(d.cpu_s, 1e-9)),
    }

    # paced
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    out["paced"] = []
    for rate in rates:
        log(f"paced at {rate:,.0f} packets/s: watch, then dumpcap")
        wr = paced(wcmd, cap, rate, args.seconds, lines=True)
        dr = paced(dumpcap_command(), cap, rate, args.seconds, lines=False)
        out["paced"].append({"rate": rate, "watch": wr, "dumpcap": dr})
    kept = [p["rate"] for p in out["paced"] if p["watch"]["keeps_up"]]
    lost = [p["rate"] for p in out["paced"] if not p["watch"]["keeps_up"]]
    out["watch_keeps_up_to"] = max(kept) if kept else None
    out["lag_starts_at"] = min(lost) if lost else None
    dkept = [p["rate"] for p in out["paced"] if p["dumpcap"]["keeps_up"]]
    out["dumpcap_keeps_up_to"] = max(dkept) if dkept else None

    # RSS over a long feed
    if args.rss_packets:
        log(f"RSS: {args.rss_packets:,} packets (the capture {-(-args.rss_packets // cap.frames)}"
            " times, shifted in time)")
        sample: list[tuple[float, float]] = []
        m = unpaced(wcmd, repeated(cap, args.rss_packets), sample)
        out["rss"] = {"packets": args.rss_packets, "status": m.status,
                      "wall_s": round(m.wall_s, 3), "cpu_s": round(m.cpu_s, 3),
                      "peak_rss_mb": round(m.peak_rss_mb, 1),
                      "frames_per_cpu_s": round(args.rss_packets / max(m.cpu_s, 1e-9)),
                      "rss_mb_by_quarter": quarters(sample)}
    churn = [int(x) for x in args.churn_connections.split(",") if x.strip()]
    if churn:
        out["churn"] = churn_runs(exe, churn)
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(out))
        return
    print_text(out)


def churn_runs(exe: str, counts: list[int]) -> list[dict[str, Any]]:
    """``watch -`` on ``n`` short connections of their own client ids, for each ``n``."""
    from qosinspect.testing.stresscaps import write_ended_connections

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            log(f"churn: {n:,} connections 100 ms apart, each its own client id")
            path = Path(tmp) / f"churn-{n}.pcap"
            write_ended_connections(path, n)
            sample: list[tuple[float, float]] = []
            data = path.read_bytes()
            m = unpaced(watch_command(exe, 1883),
                        (data[i:i + CHUNK] for i in range(0, len(data), CHUNK)), sample)
            path.unlink()
            out.append({"connections": n, "packet_time_s": round(n * 0.1), "status": m.status,
                        "cpu_s": round(m.cpu_s, 3), "peak_rss_mb": round(m.peak_rss_mb, 1),
                        "rss_mb_by_quarter": quarters(sample)})
    return out


def quarters(sample: list[tuple[float, float]]) -> list[float]:
    """The RSS sampled at a quarter, half, three quarters and the end of the run."""
    if not sample:
        return []
    return [round(sample[min(len(sample) - 1, max(0, round(q * len(sample)) - 1))][1], 1)
            for q in (0.25, 0.5, 0.75, 1.0)]


def print_text(out: dict[str, Any]) -> None:
    u = out["unpaced"]
    print(f"{out['frames']:,} frames; {out['cores']} cores; load average "
          f"{out['load_avg_start']} .. {out['load_avg_end']}")
    print(f"watch from a pipe : {u['watch_s']:7.2f} s wall {u['watch_cpu_s']:7.2f} s CPU "
          f"{u['watch_frames_per_cpu_s']:10,} frames/CPU s "
          f"({u['watch_frames_per_cpu_s_after_startup']:,} after start-up), peak RSS "
          f"{u['watch_peak_rss_mb']} MB")
    print(f"report on the file: {u['report_s']:7.2f} s wall {u['report_cpu_s']:7.2f} s CPU")
    print(f"dumpcap -i -      : {u['dumpcap_s']:7.2f} s wall {u['dumpcap_cpu_s']:7.2f} s CPU "
          f"{u['dumpcap_frames_per_s']:10,} frames/s")
    for p in out["paced"]:
        wr, dr = p["watch"], p["dumpcap"]
        print(f"paced {p['rate']:9,.0f}/s: watch fed {wr['fed_per_s']:9,}/s lag end "
              f"{wr['lag_end_s']} s max {wr['lag_max_s']} s keeps up {wr['keeps_up']}; "
              f"dumpcap fed {dr['fed_per_s']:9,}/s keeps up {dr['keeps_up']}")
    print(f"watch keeps up to {out['watch_keeps_up_to']}/s; lags from {out['lag_starts_at']}/s; "
          f"dumpcap keeps up to {out['dumpcap_keeps_up_to']}/s")
    if "rss" in out:
        r = out["rss"]
        print(f"{r['packets']:,} packets: peak RSS {r['peak_rss_mb']} MB (by quarter "
              f"{r['rss_mb_by_quarter']}), {r['cpu_s']} s CPU")
    for c in out.get("churn", ()):
        print(f"{c['connections']:,} connections of their own client ids: peak RSS "
              f"{c['peak_rss_mb']} MB (by quarter {c['rss_mb_by_quarter']}), {c['cpu_s']} s CPU")


if __name__ == "__main__":
    main()

"""The flight recorder (``watch --record-dir``): a pcapng around the injected cut, on which
``report`` shows the reconnection; windows in packet time; disk capped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import read_frames
from qosinspect.live.recorder import FlightRecorder
from qosinspect.testing.tools import free_port, stop_process, wait_port

from ._runs import QOSINSPECT, read_until

CAPTURE = Path(__file__).resolve().parents[2] / "captures" / "gen-reconnect.pcap"
TRUTH = json.loads(CAPTURE.with_suffix(".truth.json").read_text())
PORTS = ["-p", "1884"]


def test_window_around_the_cut_shows_the_reconnection(tmp_path: Path) -> None:
    """A 1 s window (before the drop, after the new CONNECT) of the generator's reconnect run:
    the report on it names the reconnection of the ground truth; the CONNECTs from before
    the window are in it (kept aside), the rest of the frames are the window's."""
    done = subprocess.run([QOSINSPECT, "watch", "-", *PORTS, "--record-dir", str(tmp_path),
                           "--record-seconds", "1", "--stall-ms", "60000", "--report",
                           str(tmp_path / "report.txt")],
                          input=CAPTURE.read_bytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    items = [json.loads(x) for x in done.stdout.splitlines()]
    rec = [x for x in items if x["type"] == "recorded"]
    assert [x["trigger"] for x in rec] == ["reconnection"]
    path = Path(rec[0]["path"])
    assert path.parent == tmp_path and path.name.endswith("-reconnection-sub-persistent.pcapng")
    frames = list(read_frames(path))
    everything = list(read_frames(CAPTURE))
    assert len(frames) == rec[0]["frames"] < len(everything)
    reconnection = next(x for x in items if x["type"] == "reconnection")
    lo, hi = reconnection["t_drop_ns"] - 10**9, reconnection["ts_ns"] + 10**9
    early = rec[0]["handshake_frames"]
    assert early > 0
    assert all(f.ts_ns < lo for f in frames[:early])
    assert all(lo <= f.ts_ns <= hi for f in frames[early:])
    assert [f.ts_ns for f in frames[early:]] == [f.ts_ns for f in everything
                                                 if lo <= f.ts_ns <= hi]

    a = analyze_capture(path, ports=(1883, 1884))
    truth = TRUTH["clients"]["sub-persistent"]["reconnects"][0]
    assert list(a.reconnects["client_id"]) == ["sub-persistent"]
    row = a.reconnects.iloc[0]
    assert bool(row["session_present"]) is truth["session_present"]
    assert row["gap"].total_seconds() == pytest.approx(truth["gap_s"], abs=0.005)
    # what crossed the cut is there too: the same redeliveries as in the whole capture
    whole = analyze_capture(CAPTURE, ports=(1883, 1884)).reconnects.iloc[0]
    assert row["redelivered_publish"] == whole["redelivered_publish"] > 0


def _run(recorder: FlightRecorder, emitted: list[dict[str, Any]]) -> None:
    """The recorder fed as watch feeds it, with a stall said at each second of the capture."""
    frames = {f.frame_no: f for f in read_frames(CAPTURE)}
    fed = 0
    said = 0
    for ev in iter_events(CAPTURE, ports=(1883, 1884)):
        last = max(getattr(ev, "frame", 0) or 0, fed)
        for n in range(fed + 1, last + 1):
            f = frames[n]
            recorder.frame(n, f.ts_ns, f.linktype, f.data, f.orig_len)
        fed = last
        recorder.event(ev)
        if ev.ts_ns // 10**9 > said:
            said = ev.ts_ns // 10**9
            recorder.update({"type": "stall", "ts": str(said), "ts_ns": ev.ts_ns,
                             "t_publish_ns": ev.ts_ns, "client_id": "c", "qos": 1,
                             "packet_id": said % 1000})
    recorder.close()


def test_disk_is_capped(tmp_path: Path) -> None:
    emitted: list[dict[str, Any]] = []
    recorder = FlightRecorder(tmp_path, emitted.append, seconds=0.5, max_mb=0.05)
    _run(recorder, emitted)
    written = [x for x in emitted if x["type"] == "recorded"]
    removed = [x for x in emitted if x["type"] == "record_removed"]
    assert len(written) >= 4 and removed
    left = sorted(tmp_path.glob("*.pcapng"))
    assert {str(p) for p in left} == {x["path"] for x in written} - {x["path"] for x in removed}
    assert sum(p.stat().st_size for p in left) <= 0.05 * 1024 * 1024 or len(left) == 1
    assert removed[0]["path"] == written[0]["path"]    # the oldest first


def test_broker_watch_records_the_reconnection(tmp_path: Path) -> None:
    """``broker --watch --record-dir``: the tap's packets, encoded again in synthetic TCP, are
    recorded around the ``reconnect`` scenario's cut; ``report`` on the file shows the
    reconnection of the client the ground truth names."""
    broker_port, front = free_port(), free_port()
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        [QOSINSPECT, "broker", "--port", str(broker_port), "--allow-anonymous", "--watch",
         "--record-dir", str(rec), "--record-seconds", "3", "--watch-report", os.devnull],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(proc, "start", 30)
        wait_port(broker_port, proc=proc)
        subprocess.run([QOSINSPECT, "generate", "reconnect", "--duration", "5", "--broker",
                        f"127.0.0.1:{broker_port}", "--port", str(front), "--truth",
                        str(tmp_path / "truth.json"), "--seed", "7", "-q"],
                       check=True, timeout=120, capture_output=True)
        read_until(proc, "reconnection", 30)
        proc.send_signal(signal.SIGTERM)    # the window still open is written at the end
        rest, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        stop_process(proc)
    recorded = [json.loads(x) for x in rest.splitlines()
                if x.strip() and json.loads(x)["type"] == "recorded"]
    files = [r["path"] for r in recorded if r["trigger"] == "reconnection"]
    assert files, recorded
    truth = json.loads((tmp_path / "truth.json").read_text())
    want = sorted(client for client, c in truth["clients"].items() if c.get("reconnects"))
    assert want == ["sub-persistent"]
    a = analyze_capture(files[0], ports=(broker_port,))
    assert list(a.reconnects["client_id"]) == want

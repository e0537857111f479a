"""Memory of the state the decoder and the analysis keep (issue 11 §9), on two scripted shapes.

* ``streams``: STREAMS connections (default 100,000) to a broker on 1883, all open at once: each
  a handshake, a CONNECT, a CONNACK and a QoS 1 PUBLISH, none closed before the end (about
  0.7 kB per connection).
* ``inflight``: IDS QoS 1 packet ids (default 100,000) in flight on one connection, never
  acknowledged, packed into full segments (about 10 bytes an id).

Both are written by :mod:`qosinspect.testing.stresscaps` into ``out/bench/`` (once). Measured,
each as its own process (peak RSS from ``wait4``): ``qosinspect decode --format jsonl`` and
``qosinspect report --format json`` on each, and the same two commands on a 100-id / 100-stream
capture of the same shape (the interpreter, the libraries and the code: ``baseline_mb``), so
``growth_mb`` is what the state costs; ``x_input`` is peak RSS over the capture's size. tshark
(``-Y mqtt -T fields -e mqtt.msgtype``) is the peer on the streams capture, in the same run.

The caps (docs/memory.md): the decoder follows at most 25,000 connections at once (the least
recently active tenth is evicted beyond that, and said); the analysis at most 65535 open exchanges
per session and 100,000 in all (oldest first, said, counted in the report's ``evictions``).

    python benchmarks/concurrent_streams.py [--streams N] [--ids N] [--json] [--pure]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from _capture import argument_parser, log, run_measured

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qosinspect.testing.stresscaps import (  # noqa: E402
    write_concurrent_streams,
    write_inflight_ids,
)

COMMANDS = {"decode": ["decode", "--format", "jsonl"], "report": ["report", "--format", "json"]}


def capture(name: str, n: int, write: Any) -> Path:
    path = ROOT / "out" / "bench" / f"{name}-{n}.pcap"
    if not path.exists():
        log(f"writing {path}")
        write(path, n)
    return path


def measure(path: Path, small: Path, env: dict[str, str] | None) -> dict[str, Any]:
    qi = str(ROOT / ".venv" / "bin" / "qosinspect")
    size_mb = path.stat().st_size / 1e6
    out: dict[str, Any] = {"capture_mb": round(size_mb, 2)}
    for name, args in COMMANDS.items():
        _, base_mb, _ = run_measured([qi, *args, str(small)], env=env)
        secs, mb, rc = run_measured([qi, *args, str(path)], env=env)
        out[name] = {"seconds": round(secs, 2), "max_rss_mb": round(mb, 1), "exit": rc,
                     "baseline_mb": round(base_mb, 1), "growth_mb": round(mb - base_mb, 1),
                     "x_input": round(mb / size_mb, 1),
                     "growth_x_input": round((mb - base_mb) / size_mb, 1)}
    return out


def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--ids", type=int, default=100_000)
    args = ap.parse_args()
    env = {"QOSINSPECT_PURE": "1"} if args.pure else None
    streams = capture("concurrent", args.streams, write_concurrent_streams)
    inflight = capture("inflight", args.ids, write_inflight_ids)
    result: dict[str, Any] = {
        "streams": {"n": args.streams, **measure(
            streams, capture("concurrent", 100, write_concurrent_streams), env)},
        "inflight": {"n": args.ids, **measure(
            inflight, capture("inflight", 100, write_inflight_ids), env)},
    }
    tshark = shutil.which("tshark")
    if tshark:
        t_s, t_mb, t_rc = run_measured([tshark, "-n", "-r", str(streams), "-Y", "mqtt", "-T",
                                        "fields", "-e", "mqtt.msgtype"])
        result["streams"]["tshark"] = {"seconds": round(t_s, 2), "max_rss_mb": round(t_mb, 1),
                                       "exit": t_rc}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()

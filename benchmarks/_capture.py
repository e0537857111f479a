"""What the capture benchmarks (decode.py, report.py) share: the large capture, the options,
and measuring a program as its own process.

Each program is measured as a separate process so its peak RSS (``wait4``) and CPU seconds are
its own; the large capture is recorded once between real peers by
``../shared/bench/make_capture.sh large`` and cached under ``out/bench/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qosinspect import _accel  # noqa: E402
from qosinspect.capture.pcapfile import CaptureFile  # noqa: E402

MAKE_CAPTURE = ROOT.parent / "shared" / "bench" / "make_capture.sh"
CACHED = ROOT / "out" / "bench" / "mqtt_large.pcap"

#: CPU seconds (user + system) of the last measured run of each program: on a shared machine
#: they move less than wall time, which waits for the CPU other work holds.
CPU: dict[str, float] = {}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_measured(cmd: list[str], stdout: Any = subprocess.DEVNULL,
                 env: dict[str, str] | None = None, key: str | None = None
                 ) -> tuple[float, float, int]:
    """Run ``cmd`` (with ``env`` added to the environment); returns (wall seconds, peak RSS in
    MB of that process, exit status). Its CPU seconds go to ``CPU[key or cmd[0]]``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env} if env else None)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    CPU[key or cmd[0]] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, proc.returncode


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every capture benchmark takes (``--capture``, ``--port``, ``--json``,
    ``--pure``); a benchmark adds its own."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--capture", help="a capture to use instead of the cached large one")
    ap.add_argument("--port", type=int, help="the broker port of --capture (default: "
                    "CAPTURE.port file, else 1883)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--pure", action="store_true", help="run qosinspect with QOSINSPECT_PURE=1 "
                    "(the pure-Python path even if the C accelerator is built)")
    return ap


def ensure_capture(args: argparse.Namespace) -> tuple[Path, int]:
    """The capture and its broker port: ``--capture`` or the cached large one (recorded first
    if missing)."""
    if args.capture:
        path = Path(args.capture)
        if not path.exists():
            sys.exit(f"{path}: no such capture")
        if args.port:
            return path, args.port
        port_file = Path(str(path) + ".port")
        return path, int(port_file.read_text()) if port_file.exists() else 1883
    port_file = Path(str(CACHED) + ".port")
    if not CACHED.exists() or not port_file.exists():
        if not MAKE_CAPTURE.exists():
            sys.exit(f"{MAKE_CAPTURE} not found: give --capture FILE")
        log(f"recording the large capture with {MAKE_CAPTURE} (about 4 minutes) ...")
        CACHED.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(MAKE_CAPTURE), str(CACHED), "large"], check=True,
                       stdout=sys.stderr)
    return CACHED, int(port_file.read_text())


def count_frames(path: Path) -> int:
    with CaptureFile(path) as cap:
        return sum(1 for _ in cap.records())


def implementation(args: argparse.Namespace) -> str:
    """Which byte-level path qosinspect will run (the C accelerator: ``c`` or ``python``);
    ``--pure`` sets QOSINSPECT_PURE for the measured processes, which inherit it."""
    if args.pure:
        os.environ["QOSINSPECT_PURE"] = "1"
    impl = "python" if args.pure else _accel.implementation()
    log(f"qosinspect implementation (byte-level C): {impl}; analysis: "
        f"{analysis_implementation(args)}")
    return impl


def analysis_implementation(args: argparse.Namespace) -> str:
    """Which analysis qosinspect will run: ``mypyc`` (compiled) or ``python``."""
    return "python" if args.pure else _accel.analysis_implementation()


def qosinspect_command() -> str:
    """The venv's ``qosinspect`` script beside this Python."""
    path = Path(sys.executable).with_name("qosinspect")
    if not path.exists():
        sys.exit(f"{path} not found: install the project (make venv)")
    return str(path)

"""benchmarks/codec.py still runs and prints its figures (a smoke test: no timing is asserted;
performance is measured by running the benchmark itself)."""

from __future__ import annotations

import json
import subprocess
import sys

from qosinspect.testing.tools import PROJECT_ROOT


def test_benchmark_runs_and_prints_one_json_object() -> None:
    script = PROJECT_ROOT / "benchmarks" / "codec.py"
    result = subprocess.run(
        [sys.executable, str(script), "--publishes", "300", "--rounds", "2",
         "--scapy-packets", "50", "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"qosinspect_pps", "scapy_pps", "ratio"} <= set(figures)
    assert figures["packets"] == 300 + 100 + 300 + 6  # PUBLISH, PUBACK, PUBREC/REL/COMP, PING
    assert figures["qosinspect_pps"] > 0
    if figures["scapy_pps"] is not None:
        assert abs(figures["ratio"] - figures["qosinspect_pps"] / figures["scapy_pps"]) < 0.1

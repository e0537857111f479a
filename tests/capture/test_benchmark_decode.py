"""benchmarks/decode.py and benchmarks/report.py still run and print figures that hold
together (smoke tests on a small shipped capture: no timing is asserted; performance is measured
by running the benchmarks themselves on the large capture)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from qosinspect.testing.tools import PROJECT_ROOT, require_tool

CAPTURE = PROJECT_ROOT / "captures" / "mosquitto-redelivery.pcap"


def _run(name: str) -> dict[str, Any]:
    require_tool("tshark")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / f"{name}.py"), "--capture",
         str(CAPTURE), "--port", "1883", "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


@pytest.mark.tools
def test_decode_benchmark() -> None:
    fig = _run("decode")
    assert fig["packets"] == 214
    assert fig["mqtt_packets_qosinspect"] == fig["mqtt_packets_tshark"] == 116
    assert fig["ratio"] == pytest.approx(fig["tshark_s"] / fig["qosinspect_s"], rel=0.05)
    assert fig["cpu_ratio"] == pytest.approx(fig["tshark_cpu_s"] / fig["qosinspect_cpu_s"],
                                             rel=0.05)
    assert fig["implementation"] in ("c", "python")


@pytest.mark.tools
def test_report_benchmark() -> None:
    fig = _run("report")
    assert fig["frames"] == 214 and fig["mqtt_packets"] == 116
    # exchanges are PUBLISH packets without the re-sends: tshark's counts minus the DUP ones
    tshark = fig["publish_packets_tshark"]
    assert fig["publishes_ours"]["q1"] == tshark["q1"] - tshark["q1_dup"]
    assert fig["publishes_ours"]["q2"] == tshark["q2"] - tshark["q2_dup"]
    assert fig["ratio_vs_tshark"] == pytest.approx(fig["tshark_s"] / fig["qosinspect_s"],
                                                   rel=0.05)
    assert fig["meets_rss"] is (fig["qosinspect_rss_mb"] <= fig["target_rss_mb"])
    assert fig["implementation"] in ("c", "python")
    assert fig["analysis"] in ("mypyc", "python")
    assert fig["pure_report_identical"] is True and fig["flows_parquet_identical"] is True

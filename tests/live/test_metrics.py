"""``watch --metrics``: /metrics scraped over HTTP during a run; its counters are the report's."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from qosinspect.live.metrics import LATENCY_BUCKETS
from qosinspect.testing.tools import free_port, stop_process

QOSINSPECT = str(Path(sys.executable).with_name("qosinspect"))
CAPTURE = Path(__file__).resolve().parents[2] / "captures" / "gen-reconnect.pcap"
PORTS = ["-p", "1884"]


def _line(proc: subprocess.Popen[bytes], timeout: float = 30) -> dict[str, Any]:
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise AssertionError("watch said nothing")
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode() if proc.stderr else ""
    item: dict[str, Any] = json.loads(line)
    return item


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scraped_counters_are_the_reports(tmp_path: Path) -> None:
    report = json.loads(subprocess.run(
        [QOSINSPECT, "report", str(CAPTURE), "--format", "json", *PORTS], check=True,
        capture_output=True, timeout=120).stdout)
    port = free_port()
    proc = subprocess.Popen([QOSINSPECT, "watch", "-", *PORTS, "--metrics", f"127.0.0.1:{port}",
                             "--interval", "0.2", "--report", str(tmp_path / "r.json"),
                             "--report-format", "json"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        # the pipe stays open: watch is running while it is scraped
        proc.stdin.write(CAPTURE.read_bytes())
        proc.stdin.flush()
        start = _line(proc)
        assert start["type"] == "start"
        url = start["metrics"]
        assert url == f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline:
            item = _line(proc)
            if item["type"] == "snapshot" and item["ts_ns"] >= report["capture"]["t_last_ns"]:
                snap = item     # a snapshot after every packet was read (the pipe is silent)
                break
        assert snap, "no snapshot after the last packet"
        m = scrape(url)
        assert proc.poll() is None
        proc.stdin.close()
        rest = proc.stdout.read() if proc.stdout else b""
        assert proc.wait(60) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        stop_process(proc)
    final = json.loads((tmp_path / "r.json").read_text())
    del final["capture"]["source"], report["capture"]["source"]
    assert final == report
    assert rest   # the last snapshot and events came after the scrape

    assert len(report["brokers"]) == 2      # the generator's two front ports
    for broker in report["brokers"]:
        label = ("broker", f"{broker['address']}:{broker['port']}")
        for row in broker["per_qos"]:
            q = (label, ("qos", str(row["qos"])))
            assert m[("qosinspect_publishes_total", q)] == row["publishes"]
            assert m[("qosinspect_completed_total", q)] == row["completed"]
            assert m[("qosinspect_resends_total", q)] == row["retransmissions"]
            assert m[("qosinspect_dup_flagged_total", q)] == row["dup_flagged"]
            assert m[("qosinspect_duplicates_delivered_total", q)] == \
                row["duplicates_delivered"]
            assert m[("qosinspect_not_delivered_total", q)] == row["not_delivered"]
    for row in report["per_qos"]:
        assert sum(v for (name, labels), v in m.items() if name == "qosinspect_publishes_total"
                   and ("qos", str(row["qos"])) in labels) == row["publishes"]
    assert sum(v for (name, _), v in m.items()
               if name == "qosinspect_reconnections_total") == report["reconnects"]
    assert m[("qosinspect_reconnections_total", (("cause", "rst"),))] == report["reconnects"]
    assert m[("qosinspect_tcp_retransmissions_total", ())] == report["tcp_retransmissions"]
    assert m[("qosinspect_connections_open", ())] == snap["connections"]["open"]
    # one histogram sample per step latency the snapshot counted, in buckets up to 30 s
    for row in snap["per_qos"]:
        for step, lat in row["latency_ms"].items():
            labels = (("qos", str(row["qos"])), ("step", step))
            assert m[("qosinspect_handshake_step_seconds_count", labels)] == \
                lat["since_start"]["n"]
            top = (("le", str(LATENCY_BUCKETS[-1])), ("qos", str(row["qos"])), ("step", step))
            assert m[("qosinspect_handshake_step_seconds_bucket", top)] <= \
                lat["since_start"]["n"]


def test_grafana_dashboard_uses_exported_metrics() -> None:
    """The shipped dashboard and scrape config name only what the exporter serves."""
    import re

    import yaml
    from prometheus_client import generate_latest

    from qosinspect.capture import iter_events
    from qosinspect.live.core import LiveCore
    from qosinspect.live.metrics import MetricsExporter

    exporter = MetricsExporter("127.0.0.1", 0)
    try:
        core = LiveCore(on_latency=exporter.observe, stall_ms=500, max_clients=50)
        for ev in iter_events(CAPTURE):
            for item in core.feed(ev):
                exporter.update(item)
        core.drops = 0
        items, _ = core.finish()
        for item in items:
            exporter.update(item)
        families = list(text_string_to_metric_families(
            generate_latest(exporter.registry).decode()))
        served = {s.name for fam in families for s in fam.samples}
        # a labelled counter with no sample yet (no anomaly in this capture) is still served
        served |= {f"{fam.name}_total" for fam in families if fam.type == "counter"}
    finally:
        exporter.close()
    docs = Path(__file__).resolve().parents[2] / "docs" / "grafana"
    dash = json.loads((docs / "qosinspect-watch.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"][1:]]
    used = {m for e in exprs for m in re.findall(r"qosinspect_\w+", e)}
    assert used and used <= served, used - served
    scrape = yaml.safe_load((docs / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9108"]


def _tap_run(proc: subprocess.Popen[bytes], tmp_path: Path, scenario: str, broker_port: int,
             front: int) -> tuple[dict[str, Any], dict[str, Any], dict[Any, float], str]:
    """A ``broker --watch --metrics`` process (``proc``) through a 2-second run of the
    generator's ``scenario``: its ``start`` line, a snapshot taken after the run (the tap ticks
    every second of its clock), /metrics scraped then, and its stderr once it stopped."""
    try:
        start = _line(proc)
        subprocess.run([QOSINSPECT, "generate", scenario, "--duration", "2", "--broker",
                        f"127.0.0.1:{broker_port}", "--port", str(front), "--truth",
                        str(tmp_path / "truth.json"), "-q"],
                       check=True, timeout=120, capture_output=True)
        done = time.time_ns()   # the tap's clock
        snap: dict[str, Any] = {}
        while not snap:
            item = _line(proc)
            if item["type"] == "snapshot" and item["ts_ns"] > done + 1_200_000_000:
                snap = item
        m = scrape(start["metrics"])
        proc.terminate()
        assert proc.wait(60) == 0, proc.stderr.read().decode() if proc.stderr else ""
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        stop_process(proc)
    return start, snap, m, err


def test_broker_watch_serves_metrics(tmp_path: Path) -> None:
    """``broker --watch --metrics``: the tap's figures scraped over HTTP while the broker runs
    equal its last snapshot, and the report it writes when it stops."""
    broker_port, metrics_port, front = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [QOSINSPECT, "broker", "--port", str(broker_port), "--allow-anonymous", "--watch",
         "--metrics", f"127.0.0.1:{metrics_port}", "--watch-report", str(tmp_path / "r.json"),
         "--report-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start, snap, m, _ = _tap_run(proc, tmp_path, "seed-qos1", broker_port, front)
    assert start == {"type": "start", "source": "broker tap",
                     "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    report = json.loads((tmp_path / "r.json").read_text())
    qos1 = (("broker", f"127.0.0.1:{broker_port}"), ("qos", "1"))
    row = next(r for r in snap["per_qos"] if r["qos"] == 1)
    assert row["messages"] > 20
    assert m[("qosinspect_publishes_total", qos1)] == row["messages"]
    assert m[("qosinspect_completed_total", qos1)] == row["completed"]
    final = next(r for r in report["per_qos"] if r["qos"] == 1)
    assert (final["publishes"], final["completed"]) == (row["messages"], row["completed"])
    assert m[("qosinspect_handshake_step_seconds_count", (("qos", "1"), ("step", "puback")))] \
        == row["latency_ms"]["puback"]["since_start"]["n"]


def _served(exporter: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(generate_latest(exporter.registry).decode())
            for smp in fam.samples}


def test_counters_by_broker(monkeypatch: Any) -> None:
    """A capture of two brokers: each broker's counters under its own ``broker`` label, equal
    to the report's rows of that broker; past MAX_BROKERS the rest are summed as ``other``."""
    from qosinspect.capture import iter_events
    from qosinspect.live import metrics
    from qosinspect.live.core import LiveCore
    from qosinspect.live.metrics import MetricsExporter

    capture = CAPTURE.with_name("two-brokers.pcap")
    ports = ["-p", "41131", "-p", "55931"]
    report = json.loads(subprocess.run(
        [QOSINSPECT, "report", str(capture), "--format", "json", *ports], check=True,
        capture_output=True, timeout=120).stdout)
    assert len(report["brokers"]) == 2
    exporter = MetricsExporter("127.0.0.1", 0)
    try:
        core = LiveCore()
        for ev in iter_events(capture, ports=(1883, 41131, 55931)):
            for item in core.feed(ev):
                exporter.update(item)
        items, _ = core.finish()
        for item in items:
            exporter.update(item)
        m = _served(exporter)
        monkeypatch.setattr(metrics, "MAX_BROKERS", 1)
        capped = _served(exporter)
    finally:
        exporter.close()
    names = []
    for b in report["brokers"]:
        name = f"{b['address']}:{b['port']}"
        names.append(name)
        for row in b["per_qos"]:
            labels = (("broker", name), ("qos", str(row["qos"])))
            assert m[("qosinspect_publishes_total", labels)] == row["publishes"]
            assert m[("qosinspect_completed_total", labels)] == row["completed"]
    assert any(m[("qosinspect_publishes_total", (("broker", n), ("qos", "1")))] for n in names)
    for q in ("0", "1", "2"):
        first = (("broker", names[0]), ("qos", q))
        other = (("broker", "other"), ("qos", q))
        assert capped[("qosinspect_publishes_total", first)] == \
            m[("qosinspect_publishes_total", first)]
        assert capped[("qosinspect_publishes_total", other)] == \
            m[("qosinspect_publishes_total", (("broker", names[1]), ("qos", q)))]


def _client_counters(flows: list[dict[str, Any]], labelled: set[str | None]
                     ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The per-client counters /metrics must serve, from the rows of ``qosinspect flows``: a
    client of ``labelled`` under its own id, the others under ``other``."""
    want: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for f in flows:
        label = f["client_id"] if f["client_id"] in labelled else "other"
        key = ("qosinspect_client_exchanges_total",
               (("client_id", label), ("direction", f["direction"])))
        want[key] = want.get(key, 0) + 1
        if f["qos"] and f["outcome"] in ("complete", "complete_after_reconnect"):
            key = ("qosinspect_client_completed_total",
                   (("client_id", label), ("qos", str(f["qos"]))))
            want[key] = want.get(key, 0) + 1
        key = ("qosinspect_client_resends_total", (("client_id", label),))
        want[key] = want.get(key, 0) + f["retransmissions"]
    return want


def test_client_label_counters_are_the_flows_tables(tmp_path: Path) -> None:
    """``--metrics-client-label``: per client, scraped during the run, the exchanges it sent
    and was sent and its completed handshakes equal the flows table's rows of that client; past
    ``--metrics-max-clients`` (1 here) the others are summed as ``other``, said once on
    stderr."""
    flows = json.loads(subprocess.run(
        [QOSINSPECT, "flows", str(CAPTURE), "--format", "json", *PORTS], check=True,
        capture_output=True, timeout=120).stdout)
    report = json.loads(subprocess.run(
        [QOSINSPECT, "report", str(CAPTURE), "--format", "json", *PORTS], check=True,
        capture_output=True, timeout=120).stdout)
    packets = subprocess.run([QOSINSPECT, "decode", str(CAPTURE), "--format", "jsonl", *PORTS],
                             check=True, capture_output=True, timeout=120).stdout.splitlines()
    # the client of the first CONNECT seen keeps its label
    first = next(p["client_id"] for p in map(json.loads, packets) if p["type"] == "CONNECT")
    want = _client_counters(flows, {first})
    assert {labels[0][1] for (_, labels) in want} == {first, "other"}
    assert any(name == "qosinspect_client_resends_total" and v for (name, _), v in want.items())
    port = free_port()
    proc = subprocess.Popen([QOSINSPECT, "watch", "-", *PORTS, "--metrics", f"127.0.0.1:{port}",
                             "--metrics-client-label", "--metrics-max-clients", "1",
                             "--interval", "0.2", "--report", os.devnull],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write(CAPTURE.read_bytes())     # the pipe stays open while it is scraped
        proc.stdin.flush()
        url = _line(proc)["metrics"]
        deadline = time.monotonic() + 60
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline and not snap:
            item = _line(proc)
            if item["type"] == "snapshot" and item["ts_ns"] >= report["capture"]["t_last_ns"]:
                snap = item
        assert snap, "no snapshot after the last packet"
        m = scrape(url)
        assert proc.poll() is None
        proc.stdin.close()
        assert proc.wait(60) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        stop_process(proc)
    want = {k: v for k, v in want.items() if v}
    got = {k: v for k, v in m.items() if k[0] in ("qosinspect_client_exchanges_total",
                                                  "qosinspect_client_completed_total",
                                                  "qosinspect_client_resends_total") and v}
    assert got == want
    assert [r["client_id"] for r in snap["clients"]] == [first, None]
    assert snap["clients"][-1]["clients"] == len({f["client_id"] for f in flows}) - 1
    assert all(v == 0 for (name, _), v in m.items()
               if name == "qosinspect_client_open_handshakes")   # all done at the end
    assert err.count('summed under client_id="other"') == 1, err


def test_broker_watch_client_label(tmp_path: Path) -> None:
    """``broker --watch --metrics --metrics-client-label``: per client, scraped while the broker
    runs, the exchanges it sent and was sent and its completed handshakes equal the rows of that
    client in ``qosinspect flows`` of a loopback capture of the broker's port; past
    ``--metrics-max-clients`` (2 here) the others are summed as ``other``, said once on
    stderr."""
    from qosinspect.testing.tools import loopback_capture

    from ._runs import require_root

    require_root()
    broker_port, metrics_port, front = free_port(), free_port(), free_port()
    wire = tmp_path / "broker-side.pcapng"
    with loopback_capture(wire, [broker_port]):
        proc = subprocess.Popen(
            [QOSINSPECT, "broker", "--port", str(broker_port), "--allow-anonymous", "--watch",
             "--metrics", f"127.0.0.1:{metrics_port}", "--metrics-client-label",
             "--metrics-max-clients", "2", "--watch-report", os.devnull],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, snap, m, err = _tap_run(proc, tmp_path, "seed", broker_port, front)
    flows = json.loads(subprocess.run(
        [QOSINSPECT, "flows", str(wire), "--format", "json", "-p", str(broker_port)],
        check=True, capture_output=True, timeout=120).stdout)
    clients = {f["client_id"] for f in flows}
    labelled = [r["client_id"] for r in snap["clients"]]
    assert len(clients) > 2 and len(labelled) == 3 and labelled[-1] is None
    assert set(labelled[:2]) <= clients
    assert snap["clients"][-1]["clients"] == len(clients) - 2
    want = _client_counters(flows, set(labelled))
    want = {k: v for k, v in want.items() if v}
    got = {k: v for k, v in m.items() if k[0] in ("qosinspect_client_exchanges_total",
                                                  "qosinspect_client_completed_total",
                                                  "qosinspect_client_resends_total") and v}
    assert got == want
    opened = [v for (name, _), v in m.items() if name == "qosinspect_client_open_handshakes"]
    assert opened and not any(opened)      # served, and all done after the run
    assert err.count('summed under client_id="other"') == 1, err

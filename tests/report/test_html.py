"""The HTML report without a browser: what the page holds (qosinspect.report.html).

The page in a real browser: test_html_browser.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import qosinspect
from qosinspect.cli import main
from qosinspect.events import MqttPacketEvent
from qosinspect.report.html import KEPT, Limits, html_page, payload, read_payload
from qosinspect.testing.events import EventBuilder
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"


def _slow_and_lost() -> qosinspect.Analysis:
    """200 QoS 1 exchanges answered in 1 ms, three answered in 900 ms (outliers), one never
    answered and one re-sent: what the page must keep when it samples."""
    b = EventBuilder()
    c = b.client("dev")
    for pid in range(1, 201):
        b.qos1(c, "c2b", "t/fast", b"x", pid, ack_ms=1)
    for pid in (201, 202, 203):
        b.publish(c, "c2b", "t/slow", b"x", qos=1, packet_id=pid, dt_ms=1)
        b.puback(c, "b2c", pid, dt_ms=900)
    b.publish(c, "c2b", "t/lost", b"x", qos=1, packet_id=300, dt_ms=1)
    b.publish(c, "c2b", "t/again", b"x", qos=1, packet_id=301, dt_ms=1)
    b.publish(c, "c2b", "t/again", b"x", qos=1, packet_id=301, dup=True, dt_ms=5)
    b.puback(c, "b2c", 301, dt_ms=1)
    b.ping(c, dt_ms=1)
    return qosinspect.analyze(b.events)


def _cols(table: dict[str, object]) -> dict[str, list[object]]:
    """A payload table's columns with deltas undone and codes decoded, as the page does."""
    cols = {k: list(v) for k, v in table["cols"].items()}  # type: ignore[attr-defined]
    for name in table["delta"]:  # type: ignore[attr-defined]
        cols[name] = np.cumsum(cols[name]).tolist()
    for name, values in table["dicts"].items():  # type: ignore[attr-defined]
        cols[name] = [None if c < 0 else values[c] for c in cols[name]]
    return cols


def test_sampling_keeps_every_outlier_and_unfinished_exchange() -> None:
    a = _slow_and_lost()
    data = read_payload(html_page(a, limits=Limits(exchanges=30)))
    ex = data["exchanges"]
    assert ex["total"] == len(a.exchanges) == 205
    cols = _cols(ex)
    kept = dict(zip(cols["ex_id"], cols["kept"], strict=True))
    by_topic = a.exchanges.set_index("ex_id")["topic"].astype(str)
    slow = [i for i in by_topic.index if by_topic[i] == "t/slow"]
    assert all(KEPT[kept[i]] == "outlier" for i in slow)
    unfinished = a.exchanges.loc[a.exchanges["outcome"] != "complete", "ex_id"].tolist()
    resent = a.exchanges.loc[a.exchanges["retransmissions"] > 0, "ex_id"].tolist()
    assert unfinished and resent
    assert all(KEPT[kept[i]] == "notable" for i in unfinished + resent)
    # the budget is filled by an even sample of the rest, over the whole capture
    assert ex["n"] == 30
    sample = sorted(i for i, k in kept.items() if KEPT[k] == "sample")
    assert len(sample) == 30 - len(slow) - len(set(unfinished + resent))
    assert sample[0] < 20 and sample[-1] > 180
    assert cols["ex_id"] == sorted(cols["ex_id"])


def test_everything_kept_when_it_fits() -> None:
    a = _slow_and_lost()
    data = read_payload(html_page(a))
    assert data["exchanges"]["n"] == data["exchanges"]["total"] == 205
    assert data["packets"]["n"] == data["packets"]["total"] == len(a.packets)
    cols = _cols(data["exchanges"])
    t0 = int(data["t0_ns"])
    first = a.exchanges.iloc[0]
    assert cols["t_publish"][0] + t0 == first["t_publish"].value      # to the nanosecond
    assert cols["latency_ms"][0] == pytest.approx(first["latency_ms"], abs=1e-3)


def test_packet_budget_keeps_connection_and_notable_packets_first() -> None:
    a = _slow_and_lost()
    # CONNECT, CONNACK; 10 packets of the 5 notable exchanges; then 3 of the sampled ones
    data = read_payload(html_page(a, limits=Limits(exchanges=10, packets=15)))
    pk = _cols(data["packets"])
    assert data["packets"]["total"] == len(a.packets) and data["packets"]["n"] == 15
    types = pk["packet_type"]
    assert "CONNECT" in types and "CONNACK" in types
    assert "PINGREQ" not in types                 # keep-alives go last
    ex_ids = {i for i in pk["ex_id"] if i is not None}
    notable = a.exchanges.loc[a.exchanges["topic"].isin(["t/slow", "t/lost", "t/again"]),
                              "ex_id"]
    assert set(notable) <= ex_ids
    assert pk["ts"] == sorted(pk["ts"])           # capture order
    assert sum(pk["resend"]) == 1


def test_latency_bins_count_every_exchange() -> None:
    a = _slow_and_lost()
    data = read_payload(html_page(a, limits=Limits(exchanges=10)))
    (q1,) = data["latency"]
    assert q1["qos"] == 1
    steps = {s["step"]: s for s in q1["steps"]}
    completed = int((a.exchanges["outcome"] == "complete").sum())
    assert sum(steps["puback"]["counts"]) == steps["puback"]["n"] == completed
    assert sum(steps["total"]["counts"]) == completed
    edges = q1["edges_ms"]
    assert edges == sorted(edges) and edges[-1] >= 900 and edges[0] <= 1
    # logarithmic: a constant ratio between edges
    ratios = np.diff(np.log(edges))
    assert np.allclose(ratios, ratios[0], rtol=1e-3)


def test_report_numbers_are_the_json_report(tmp_path: Path) -> None:
    capture = CAPTURES / "gen-reconnect.pcap"
    out = tmp_path / "r.html"
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(capture), "--format", "html", "-o", str(out)])
    assert res.exit_code == 0, res.output
    js = runner.invoke(main, ["report", str(capture), "--format", "json"])
    assert js.exit_code == 0, js.output
    data = read_payload(out.read_text(encoding="utf-8"))
    assert data["report"] == json.loads(js.output)
    assert data["capture"] == str(capture)
    assert data["audit"]["target"] == str(capture)
    assert data["reconnects"]["n"] == 1
    # the clear text section's lines are the text report's
    text = runner.invoke(main, ["report", str(capture)]).output
    assert data["clear_text_lines"] and all(line in text for line in data["clear_text_lines"])


def test_page_is_self_contained() -> None:
    """Nothing to fetch: no external script, style, font or image; the scripts inline."""
    page = html_page(qosinspect.analyze_capture(CAPTURES / "mosquitto-redelivery.pcap"))
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"url\(|@import", page)
    assert "@@" not in page                        # every placeholder filled
    assert "</script>" not in page.split('id="data-gz">', 1)[1].split("</script>", 1)[0]
    # the script refers to nothing outside the file
    script = page.rsplit("<script>", 1)[1]
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script)


def test_size_and_rows_of_a_small_capture(tmp_path: Path) -> None:
    """A shipped capture's page: every exchange and packet in it, and small (the plotly.js
    bundle is most of it). The benchmark capture's figures: benchmarks/html_report.py."""
    capture = CAPTURES / "gen-reconnect.pcap"
    a = qosinspect.analyze_capture(capture)
    page = html_page(a)
    data = read_payload(page)
    assert data["exchanges"]["n"] == data["exchanges"]["total"] == len(a.exchanges) > 100
    assert data["packets"]["n"] == len(a.packets)
    assert len(page.encode()) < 2.5 * 2**20


def test_cli_html_to_stdout_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(CAPTURES / "gen-qos1.pcap"), "--format", "html",
                               "--no-audit"])
    assert res.exit_code == 0
    assert read_payload(res.output)["audit"] is None
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    res = runner.invoke(main, ["report", str(bad), "--format", "html", "-o",
                               str(tmp_path / "x.html")])
    assert res.exit_code == 1
    assert "bad.pcap" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["report", str(CAPTURES / "gen-qos1.pcap"), "--format", "html",
                               "-o", str(tmp_path / "missing" / "x.html")])
    assert res.exit_code == 1 and "missing" in res.output


def test_read_payload_rejects_other_pages() -> None:
    with pytest.raises(ValueError, match="not a qosinspect HTML report"):
        read_payload("<html><body>hello</body></html>")


def _reference_packets(pk: pd.DataFrame, data: dict[str, object], budget: int) -> pd.DataFrame:
    """The ladder's packets chosen from the whole packets table, the rule of payload.py's
    docstring written plainly: by priority, then in capture order, at most ``budget``."""
    ex = _cols(data["exchanges"])  # type: ignore[arg-type]
    notable = {i for i, k in zip(ex["ex_id"], ex["kept"], strict=True) if k > 0}
    sampled = {i for i, k in zip(ex["ex_id"], ex["kept"], strict=True) if k == 0}
    if len(pk) <= budget:
        return pk

    def priority(row: pd.Series) -> int:
        if pd.isna(row["ex_id"]):
            return 3 if row["packet_type"] in ("PINGREQ", "PINGRESP") else 0
        if row["ex_id"] in notable or row["resend"]:
            return 1
        return 2 if row["ex_id"] in sampled else 4

    p = pk.apply(priority, axis=1).to_numpy()
    order = np.argsort(p, kind="stable")[:budget]
    return pk.iloc[np.sort(order[p[order] < 4])]


@pytest.mark.parametrize(("capture", "limits"), [
    ("gen-reconnect.pcap", Limits(exchanges=40, packets=70)),
    ("gen-stalled-acks.pcap", Limits(exchanges=20, packets=25)),
    ("mosquitto-redelivery.pcap", Limits(exchanges=5, packets=12)),
    ("gen-websocket.pcap", Limits(exchanges=10, packets=40)),       # packets sharing a frame
    ("mosquitto-v5-props.pcap", Limits(exchanges=5, packets=20)),
    ("gen-reconnect.pcap", Limits()),
])
def test_page_read_in_parts_is_the_page_of_the_full_tables(
        capture: str, limits: Limits, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page is built without the analysis' full tables (their memory, on a large capture);
    it holds what the full tables give: the same exchange rows, and the ladder's packets the
    rule picks from the whole packets table, in capture order."""
    monkeypatch.setattr(payload, "_PACKETS_PER_READ", 40)     # many reads, even here
    a = qosinspect.analyze_capture(CAPTURES / capture)
    page = html_page(a, limits=limits)
    assert "exchanges" not in vars(a) and "packets" not in vars(a)   # never built whole
    data = read_payload(page)
    full = qosinspect.analyze_capture(CAPTURES / capture)
    pk, _ = full.packets, full.exchanges                             # built whole first
    assert read_payload(html_page(full, limits=limits)) == data
    assert data["packets"]["total"] == len(pk)
    ref = _reference_packets(pk, data, limits.packets)
    got = _cols(data["packets"])
    assert got["frame"] == ref["frame"].tolist()
    assert got["packet_type"] == ref["packet_type"].astype(str).tolist()
    assert got["ex_id"] == [None if pd.isna(v) else int(v) for v in ref["ex_id"]]
    assert data["packets"]["n"] <= limits.packets


def test_packets_sharing_a_frame_keep_their_order() -> None:
    """Packets one TCP segment carried (one frame) stay in the order they were sent, whatever
    their priority: a broker's PUBACK to a sampled exchange, then in the same segment a
    PUBLISH that is never acknowledged (notable)."""
    b = EventBuilder()
    c = b.client("dev")
    for pid in range(1, 41):
        b.publish(c, "c2b", "t/fast", b"x", qos=1, packet_id=pid, dt_ms=1)
        b.puback(c, "b2c", pid, dt_ms=1)
        if pid == 20:
            b.publish(c, "b2c", "t/lost", b"x", qos=1, packet_id=7, dt_ms=0)
    events = list(b.events)
    lost = next(i for i, e in enumerate(events) if isinstance(e, MqttPacketEvent)
                and getattr(e.packet, "topic", None) == "t/lost")
    ack = events[lost - 1]
    assert isinstance(ack, MqttPacketEvent) and ack.direction == events[lost].direction
    events[lost] = events[lost]._replace(frame=ack.frame, first_frame=ack.frame)
    a = qosinspect.analyze(events)
    data = read_payload(html_page(a, limits=Limits(exchanges=30, packets=60)))
    pk = _cols(data["packets"])
    at = [i for i, f in enumerate(pk["frame"]) if f == ack.frame]
    assert [pk["packet_type"][i] for i in at] == ["PUBACK", "PUBLISH"]
    assert [pk["frame"][i] for i in at] == [ack.frame, ack.frame]

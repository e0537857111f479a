"""Every plot function renders to a file, on its own figure or on a given ``ax``, and leaves
matplotlib's global state alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

import qosinspect
from qosinspect.analysis.api import Analysis
from qosinspect.report import plots
from qosinspect.testing.events import EventBuilder


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    b = EventBuilder()
    c1 = b.client("dev", clean_start=False)
    b.qos1(c1, "c2b", "t/1", b"a", 1)
    b.publish(c1, "b2c", "t/2", b"b", qos=2, packet_id=1)
    b.pubrec(c1, "c2b", 1)
    b.tcp_retransmission(c1, "b2c", 10)
    b.gap(c1, "c2b", 5)
    b.close(c1, "rst")
    c2 = b.client("dev", clean_start=False, session_present=True, dt_ms=300)
    b.pubrel(c2, "b2c", 1)
    b.pubrel(c2, "b2c", 1, dt_ms=20)
    b.pubcomp(c2, "c2b", 1)
    b.qos2(c2, "c2b", "t/3", b"c", 2)
    other = b.client("other")
    b.publish(other, "c2b", "t/4", b"d", qos=1, packet_id=1)
    return qosinspect.analyze(b.events)


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 3000


@pytest.mark.parametrize("draw", [plots.plot_latency, plots.plot_timeline, plots.plot_inflight])
def test_plot_on_its_own_figure(analysis: Analysis, draw: object, tmp_path: Path) -> None:
    before = dict(matplotlib.rcParams)
    ax = draw(analysis)  # type: ignore[operator]
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "p.png")
    _png(tmp_path / "p.png")
    assert dict(matplotlib.rcParams) == before
    assert ax.get_title()


def test_plots_draw_on_a_given_ax(analysis: Analysis, tmp_path: Path) -> None:
    fig = Figure(figsize=(12, 12))
    axes = fig.subplots(2, 2).ravel()
    assert plots.plot_latency(analysis, ax=axes[0]) is axes[0]
    assert plots.plot_timeline(analysis, ax=axes[1]) is axes[1]
    assert plots.plot_inflight(analysis, ax=axes[2]) is axes[2]
    assert plots.plot_ladder(analysis, client="dev", ax=axes[3]) is axes[3]
    fig.savefig(tmp_path / "grid.png")
    _png(tmp_path / "grid.png")


def test_ladder_window_and_marks(analysis: Analysis, tmp_path: Path) -> None:
    ax = plots.plot_ladder(analysis, client="dev")
    texts = [t.get_text() for t in ax.texts]
    assert any("(re-send)" in t for t in texts)
    assert any("stream_gap" in t for t in texts) and any("ended: rst" in t for t in texts)
    t0 = analysis.result.t_first or 0
    narrow = plots.plot_ladder(analysis, conn=1, since_ns=t0, until_ns=t0 + 1)
    assert any("no packet in this window" in t.get_text() for t in narrow.texts)
    with pytest.raises(LookupError):
        plots.plot_ladder(analysis, client="nobody")


def test_inflight_counts(analysis: Analysis) -> None:
    ax = plots.plot_inflight(analysis)
    lines = {line.get_label(): line for line in ax.get_lines()}
    q1 = lines["QoS 1"].get_ydata()
    assert max(q1) == 1 and q1[-1] == 1  # other's QoS 1 never acknowledged: still open


def test_save_all(analysis: Analysis, tmp_path: Path) -> None:
    paths = plots.save_all(analysis, tmp_path / "out")
    assert [p.name for p in paths] == ["latency.png", "timeline.png", "inflight.png",
                                       "ladder.png"]
    for p in paths:
        _png(p)


def test_empty_analysis_still_draws(tmp_path: Path) -> None:
    a = qosinspect.analyze([])
    for draw in (plots.plot_latency, plots.plot_timeline, plots.plot_inflight):
        ax = draw(a)
        fig = ax.get_figure(root=True)
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / "e.png")
    assert plots.save_all(a, tmp_path / "e")[-1].name == "inflight.png"  # no client: no ladder


def test_timeline_puts_reconnecting_clients_first(analysis: Analysis) -> None:
    ax = plots.plot_timeline(analysis, max_clients=1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dev"]
    assert "1 more clients not shown" in ax.get_title()


def test_latency_plot_keeps_the_steps_of_unfinished_qos2() -> None:
    """No QoS 2 exchange completed, but PUBREC and PUBREL were seen: the report prints those
    step latencies, so the plot draws them too (it used to drop every QoS 2 step)."""
    b = EventBuilder()
    c = b.client("x")
    b.publish(c, "c2b", "t", b"m", qos=2, packet_id=1)
    b.pubrec(c, "b2c", 1, dt_ms=2)
    b.pubrel(c, "c2b", 1, dt_ms=3)          # PUBCOMP never comes
    a = qosinspect.analyze(b.events)
    steps = a.report()["per_qos"][2]["latency_ms_by_step"]
    assert steps["pubrec"]["max"] == 2.0 and steps["pubrel"]["max"] == 3.0
    fig = Figure()
    ax = plots.plot_latency(a, ax=fig.subplots())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "QoS 2 PUBLISH→PUBREC (n=1)" in labels and "QoS 2 PUBREC→PUBREL (n=1)" in labels

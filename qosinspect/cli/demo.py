"""``qosinspect demo``: the README's first command. QoS 0, 1 and 2 side by side on the wire,
through a forced reconnection, captured, decoded, reported and plotted, in well under two
minutes.

What it runs is the built-in ``reconnect`` scenario (the ``seed`` stream: ten topics at 10 Hz at
each QoS level, to a persistent subscriber and a steady one), with its fault times scaled to
``--duration``: at 40 % the persistent subscriber's acknowledgements stall, at 45 % its
connection is reset and refused for 30 % of the run, then it reconnects and resumes its session.
The capture is then analysed like any other (``qosinspect report``), the plots are written
(``qosinspect plot``), and the lessons are printed with the numbers of this run, each checked
against what the clients themselves recorded (the ground truth):

- QoS 0 messages published during the outage are lost (the broker queues only QoS 1/2);
- QoS 1 messages delivered but not acknowledged before the cut come again: duplicates;
- QoS 2 messages arrive exactly once, redelivered or not;
- each level costs more round trips, hence latency.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..errors import QosinspectError
from . import main

__all__ = ["demo", "demo_scenario"]


def demo_scenario(duration: float = 10.0, front_port: int | None = None) -> Any:
    """The ``reconnect`` scenario with its fault times scaled to ``duration`` seconds."""
    from ..traffic.builtin import builtin_data
    from ..traffic.scenario import parse_scenario

    data = builtin_data("reconnect")
    data["name"] = "demo"
    data["duration"] = duration
    if front_port is not None:
        data["front_port"] = front_port
    hold, cut = data["faults"]
    hold.update(at=round(0.40 * duration, 3), duration=round(0.10 * duration, 3))
    cut.update(at=round(0.45 * duration, 3), down_for=round(0.30 * duration, 3))
    return parse_scenario(data, path="<demo>", default_name="demo")


def _lessons(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    per_qos = {row["qos"]: row for row in report["per_qos"]}
    told = {row["qos"]: row for row in truth["per_qos"]}
    sub = truth["clients"].get("sub-persistent", {})
    rec = (sub.get("reconnects") or [{}])[0]
    lines = ["What this run shows (capture analysis; what the clients recorded in brackets):"]

    def both(qos: int, report_key: str, truth_key: str) -> str:
        row = per_qos.get(qos, {})
        found = sum(row.get(k, 0) or 0 for k in report_key.split("+"))
        return f"{found} [{told.get(qos, {}).get(truth_key, 0)}]"

    if rec:
        lines.append(f"  - the persistent subscriber was cut at t={rec.get('t_lost', 0):.1f} s "
                     f"and back {rec.get('gap_s', 0):.1f} s later (session present: "
                     f"{rec.get('session_present')}); the broker resent "
                     f"{report.get('redelivered', {}).get('publish', 0)} PUBLISH to it with "
                     "DUP=1")
    lost = both(0, "not_delivered+not_delivered_offline", "lost")
    lines.append(f"  - QoS 0: {lost} messages lost during the outage: at most once, nothing "
                 "queued for an offline subscriber")
    lines.append(f"  - QoS 1: {both(1, 'duplicates_delivered', 'duplicates')} duplicates after "
                 "redelivery: delivered, acknowledgement lost, sent again")
    q2 = told.get(2, {})
    lines.append(f"  - QoS 2: {q2.get('unique', 0)} of {q2.get('expected', 0)} deliveries "
                 f"exactly once, {both(2, 'duplicates_delivered', 'duplicates')} duplicates, "
                 f"{per_qos.get(2, {}).get('complete_after_reconnect', 0)} handshakes "
                 "finished after the reconnection")
    lat = []
    for q in (1, 2):
        p50 = (per_qos.get(q, {}).get("latency_ms") or {}).get("p50")
        if p50 is not None:
            lat.append(f"QoS {q} {p50:.2f} ms")
    if lat:
        lines.append("  - the cost: median handshake time " + ", ".join(lat) + " (QoS 1: "
                     "PUBLISH->PUBACK; QoS 2: PUBLISH->PUBREC->PUBREL->PUBCOMP); QoS 0 needs "
                     "none")
    return lines


def _ladder_window(analysis: Any) -> tuple[int | None, int | None]:
    """The ladder: the persistent subscriber's reconnection, from its CONNECT to just after the
    last PUBLISH redelivered with DUP=1 (the redelivery is a burst of well under a second)."""
    rec = analysis.reconnects
    rec = rec[rec.client_id == "sub-persistent"]
    if rec.empty:
        return None, None
    since = int(rec.t_connect.iloc[0].value) - 200_000
    ex = analysis.exchanges
    redelivered = ex[(ex.client_id == "sub-persistent") & ex.dup_seen]
    last = (int(redelivered.t_publish_last.max().value) if len(redelivered)
            else since + 2_000_000)
    return since, last + 300_000


@main.command()
@click.option("--output", "-o", "outdir", type=click.Path(file_okay=False), default="out/demo",
              show_default=True, help="Directory for the capture, ground truth and plots.")
@click.option("--duration", type=click.FloatRange(2.0, 600.0), default=10.0, show_default=True,
              help="Seconds of publishing (fault times scale with it).")
@click.option("--capture-method", default="auto", show_default=True,
              type=click.Choice(["auto", "dumpcap", "tcpdump", "scapy", "tap"]),
              help="auto: dumpcap or tcpdump as root, else the proxy's synthetic pcapng.")
@click.option("--port", "front_port", type=click.IntRange(0, 65535), default=None,
              help="Port the clients connect to (default 1883 if free; 0: any free port).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def demo(outdir: str, duration: float, capture_method: str, front_port: int | None,
         quiet: bool) -> None:
    """Show QoS 0, 1 and 2 through a reconnection: generate, capture, report, plot.

    Runs the seed stream (ten topics at 10 Hz per QoS level) on the built-in broker, cuts a
    persistent subscriber off in the middle, captures everything, prints the per-QoS report
    and the lessons of the run, and writes the plots. Prints where every file is.
    """
    from ..report.plots import save_all
    from ..report.text import write_report
    from ..traffic.run import RunOptions
    from .capture_options import CaptureSource
    from .generate import run_and_report

    started = time.monotonic()
    out = Path(outdir)
    capture = out / "demo.pcapng"
    try:
        out.mkdir(parents=True, exist_ok=True)
        scenario = demo_scenario(duration, front_port)
        say = None if quiet else (lambda text: click.echo(text, err=True))
        if say:
            say(f"demo: {scenario.description}")
        result = run_and_report(scenario, RunOptions(capture=capture,
                                                     capture_method=capture_method, log=say))
    except (QosinspectError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if result.interrupted:
        raise click.ClickException(f"interrupted; what was captured is in {capture}")
    source = CaptureSource(str(capture), tuple(result.ports), True, scenario.mqtt_version,
                           "native", same_broker=result.same_broker)
    analysis = source.analyze()
    write_report(analysis, "table", capture=source.command_args())
    report = analysis.report()
    click.echo("")
    for line in _lessons(report, result.truth):
        click.echo(line)
    since, until = _ladder_window(analysis)
    try:
        plots = save_all(analysis, out / "plots", client="sub-persistent", since_ns=since,
                         until_ns=until)
    except (OSError, LookupError) as exc:
        raise click.ClickException(f"writing the plots: {exc}") from None
    click.echo("")
    click.echo(f"files ({time.monotonic() - started:.0f} s):")
    # the same command as the report above: the clients' ports other than 1883 are MQTT too
    # (without them, the reconnection attempts refused during the outage are not counted)
    click.echo(f"  capture       {capture}  ({result.capture_method}; open it in Wireshark, "
               f"or: qosinspect report {source.command_args()})")
    click.echo(f"  ground truth  {result.truth_path}")
    for p in plots:
        click.echo(f"  plot          {p}")

"""``qosinspect compare A B``: two captures, datasets or tag slices of datasets compared per
QoS (:mod:`qosinspect.compare`), as a table, markdown or JSON, and a gate for CI with
``--fail-on``."""

from __future__ import annotations

import click

from . import main
from .output_options import format_option, output_file, writing

__all__ = ["compare"]


@main.command()
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
@click.option("--a", "a_tags", multiple=True, metavar="NAME=VALUE",
              help="A is the captures of dataset A with this tag; repeatable.")
@click.option("--b", "b_tags", multiple=True, metavar="NAME=VALUE",
              help="B is the captures of dataset B with this tag; repeatable.")
@click.option("--fail-on", "fail_on", multiple=True, metavar="EXPR",
              help="Exit 1 when EXPR holds, e.g. 'p99.qos1 > +20%' or 'loss.qos0 > 0'; "
                   "repeatable (docs/batch.md).")
@click.option("--threshold", type=click.FloatRange(0), default=20.0, show_default=True,
              help="Percent the median latency must move to count (with --min-ms and the "
                   "test).")
@click.option("--min-ms", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Milliseconds the median latency must move to count.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Significance level of the two-sample test.")
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on, for captures (1883 always is).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False, writable=True),
              default=None, metavar="FILE",
              help="Also draw the latency distributions of both sides per QoS, direction and "
                   "step (CDFs, p50/p99 with their intervals) to FILE (.png, .svg or .pdf).")
@format_option("table", "markdown", "json", default="table")
@output_file
def compare(a: str, b: str, a_tags: tuple[str, ...], b_tags: tuple[str, ...],
            fail_on: tuple[str, ...], threshold: float, min_ms: float, alpha: float,
            ports: tuple[int, ...], plot: str | None, fmt: str, output: str | None) -> None:
    """Compare B against A: latency per QoS and step (p50/p90/p99 with bootstrap intervals,
    Mann-Whitney U), completion, re-send, duplicate, loss and reconnection rates (Wilson
    intervals), anomaly kinds on one side only, and a verdict.

    A and B are captures or datasets (qosinspect batch); the same dataset twice with --a and
    --b tags compares two slices of it (--a firmware=3.5 --b firmware=3.7).
    """
    from ..compare import Thresholds, load_side, parse_fail_on
    from ..compare import compare as run_compare
    from ..compare.render import render
    from ..dataset.sources import parse_tag
    from ..errors import QosinspectError
    from ..report.output import write_document

    try:
        gates = [parse_fail_on(e) for e in fail_on]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fail-on") from None
    try:
        ta = dict(parse_tag(t) for t in a_tags)
        tb = dict(parse_tag(t) for t in b_tags)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--a/--b") from None
    port_list = (1883, *ports)
    try:
        side_a = load_side(a, ta, ports=port_list)
        side_b = load_side(b, tb, ports=port_list)
    except (QosinspectError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    result = run_compare(side_a, side_b, Thresholds(alpha, threshold / 100, min_ms))
    doc = result.document()
    fired = [g.text for g in gates if g.fires(result)]
    doc["failed"] = fired
    with writing(output):
        write_document(doc, fmt, output, render=lambda f: render(result, f) + "".join(
            f"\nfail-on: {t}" for t in fired))
    if plot is not None:
        from ..compare.plot import save_comparison_figure

        try:
            save_comparison_figure(side_a, side_b, result, plot)
        except (OSError, ValueError) as exc:  # a folder that is not there, an unknown suffix
            raise click.ClickException(f"--plot {plot}: {exc}") from None
    if fired:
        raise SystemExit(1)

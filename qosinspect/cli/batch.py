"""``qosinspect batch CAPTURES... -o DATASET``: many captures analysed into one Parquet
dataset (:mod:`qosinspect.dataset`), on the local cores or a Dask cluster."""

from __future__ import annotations

import sys

import click

from . import main
from .capture_options import MQTT_VERSIONS
from .output_options import writing

__all__ = ["batch"]

#: The exit status is the number of captures that failed, up to this (statuses above 125
#: mean a signal or a shell error).
MAX_STATUS = 125


@main.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("--output", "-o", "outdir", required=True,
              type=click.Path(file_okay=False, writable=True),
              help="The dataset folder (made if missing; a later run adds to it).")
@click.option("--tag", "tags", multiple=True, metavar="NAME=VALUE",
              help="A tag for every capture of this run (a column tag_NAME); repeatable.")
@click.option("--tags-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV of tags per capture: a 'capture' column (its name in the dataset or "
                   "its file name) and one column per tag; these win over --tag.")
@click.option("--packets", is_flag=True,
              help="Write the per-packet table too (one row per MQTT packet: large).")
@click.option("--force", is_flag=True,
              help="Analyse again captures already in the dataset with these options.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None,
              help="Local worker processes (default: one per core; 1: in this process).")
@click.option("--dask", "dask", metavar="ADDRESS", default=None,
              help="Run on this Dask distributed scheduler (tcp://host:8786) instead; its "
                   "workers must read the captures and write DATASET at the same paths.")
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on (1883 always is); repeatable.")
@click.option("--no-detect", is_flag=True,
              help="Do not look for MQTT (a CONNECT) on other ports.")
@click.option("--mqtt-version", type=click.Choice(list(MQTT_VERSIONS)), default="4",
              show_default=True,
              help="Version for connections whose CONNECT is not in the capture.")
def batch(captures: tuple[str, ...], outdir: str, tags: tuple[str, ...], tags_csv: str | None,
          packets: bool, force: bool, jobs: int | None, dask: str | None,
          ports: tuple[int, ...], no_detect: bool, mqtt_version: str) -> None:
    """Analyse CAPTURES (files, folders searched recursively, globs; gzip allowed) into one
    dataset of Parquet tables.

    One folder per table (connections, sessions, exchanges, reconnects, deliveries,
    anomalies, tcp_retransmissions, undecoded_streams, summary, packets with --packets),
    one partition per capture, every row with capture, capture_sha256 and the tag_* columns;
    plus captures (what was analysed) and failures (what could not be, and why).
    A capture already in the dataset (same sha256, same options) is skipped. The exit
    status is the number of captures that failed (0: none). Read the dataset with
    qosinspect.dataset.open(DATASET) or qosinspect query DATASET "SQL"; see docs/batch.md.
    """
    from ..dataset import DecoderOptions, expand_captures, plan, run_batch
    from ..dataset.runner import ClusterError
    from ..dataset.sources import parse_tag, read_tags_csv
    from ..dataset.worker import Outcome
    from .heap import steady_heap
    from .progress import Progress

    try:
        common = dict(parse_tag(t) for t in tags)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tag") from None
    try:
        files = expand_captures(captures)
        per_capture = read_tags_csv(tags_csv) if tags_csv else {}
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    options = DecoderOptions(ports=(1883, *ports), detect_any_port=not no_detect,
                             mqtt_version=MQTT_VERSIONS[mqtt_version], packets=packets)
    with writing(outdir):
        tasks, skipped = plan(files, outdir, options, tags=common, tags_csv=per_capture,
                              force=force)
    total = sum(t.size for t in tasks)
    done = [0, 0]
    progress = (Progress(sys.stderr, lambda: (done[1], total), unit=f"of {len(tasks)} captures")
                if sys.stderr.isatty() else None)

    def on_done(outcome: Outcome) -> None:
        done[0] += 1
        done[1] += outcome.size
        if outcome.failed:
            if progress is not None:
                progress.close()
            what = "read up to a defect" if outcome.partial else "failed"
            click.echo(f"{outcome.capture}: {what}: {outcome.error}", err=True)
        if progress is not None:
            progress.tick(done[0])

    steady_heap()  # (forked pool workers keep it)
    try:
        with writing(outdir):
            result = run_batch(tasks, jobs=jobs, dask=dask, on_done=on_done)
    except ClusterError as exc:
        raise click.ClickException(f"--dask {dask}: {exc}") from None
    finally:
        if progress is not None:
            progress.close()
    failed = len(result.failed)
    where = f"Dask cluster {dask}" if dask else f"{result.workers} local process(es)"
    click.echo(f"{len(files)} captures: {len(result.outcomes) - failed} analysed, "
               f"{len(skipped)} skipped (already in {outdir}), {failed} failed; "
               f"{result.bytes_read / 1e6:.1f} MB in {result.seconds:.1f} s on {where}")
    for table, n in result.rows().items():
        click.echo(f"  {table}: {n} rows")
    if failed:
        click.echo(f"failures: qosinspect query {outdir} \"SELECT capture, error FROM failures\"",
                   err=True)
        raise SystemExit(min(failed, MAX_STATUS))

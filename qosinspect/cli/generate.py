"""``qosinspect generate SCENARIO``: run a scenario through the fault proxy, capture it, print
and write the ground truth, optionally report on the capture at once.

The work is :func:`qosinspect.traffic.run.run_scenario`; this module parses options into
scenario overrides, runs the event loop with Ctrl-C wired to a clean stop (a second Ctrl-C
aborts), and turns every bad input into a message and a non-zero exit (130 after Ctrl-C, once
the capture and ground truth are written).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import QosinspectError
from . import main
from .capture_options import MQTT_VERSIONS
from .output_options import format_option

__all__ = ["generate", "run_and_report"]



def _say(text: str) -> None:
    click.echo(text, err=True)


def run_and_report(scenario: Any, options: Any) -> Any:
    """Run on a fresh event loop with SIGINT/SIGTERM asking for a clean stop."""
    from ..traffic.run import run_scenario

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        stop = options.stop = asyncio.Event()
        task = asyncio.current_task()
        presses = 0

        def on_signal() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                _say("stopping: closing connections, writing the capture and ground truth "
                     "(Ctrl-C again to abort)")
                stop.set()
            elif task is not None:
                task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):   # not the main thread
                pass
        try:
            return await run_scenario(scenario, options)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(go())


@main.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_", is_flag=True, help="List the built-in scenarios and exit.")
@click.option("--broker", "broker", default=None, metavar="HOST:PORT",
              help="Use this external broker (e.g. mosquitto) instead of the built-in one.")
@click.option("--mqtt-version", type=click.Choice(sorted(MQTT_VERSIONS)), default=None,
              help="MQTT version of every client (default: the scenario's).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds of publishing (default: the scenario's).")
@click.option("--drain", type=click.FloatRange(0), default=None,
              help="Seconds allowed after publishing for QoS 1/2 flows to finish.")
@click.option("--seed", type=int, default=None, help="Random seed (Poisson, jitter, drops).")
@click.option("--port", "front_port", type=click.IntRange(0, 65535), default=None,
              help="Port the clients connect to (the fault proxy; default 1883 if free).")
@click.option("--capture", type=click.Path(dir_okay=False), default=None,
              help="Record the run to this pcapng file (ground truth: FILE.truth.json).")
@click.option("--capture-method", default="auto", show_default=True,
              type=click.Choice(["auto", "dumpcap", "tcpdump", "scapy", "tap"]),
              help="auto: dumpcap or tcpdump as root, else the proxy's synthetic pcapng (tap).")
@click.option("--interface", default="lo", show_default=True, help="Capture interface.")
@click.option("--truth", type=click.Path(dir_okay=False), default=None,
              help="Where to write the ground truth JSON (default: next to the capture).")
@click.option("--report", "do_report", is_flag=True,
              help="Report on the capture right after the run (needs --capture).")
@format_option("table", "markdown", "json",
               help="Format of --report (json: standard output is the report alone, what the "
                    "run did goes to stderr).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def generate(scenario: str | None, list_: bool, broker: str | None, mqtt_version: str | None,
             duration: float | None, drain: float | None, seed: int | None,
             front_port: int | None, capture: str | None, capture_method: str,
             interface: str, truth: str | None, do_report: bool, fmt: str,
             quiet: bool) -> None:
    """Run SCENARIO (a built-in name or a TOML file) and print what it did.

    Clients connect through a fault proxy that applies the scenario's faults (cut, black hole,
    delay, drop, duplicate, held acks, broker restart). At the end the messages sent and
    received per client and QoS, and the faults applied, are printed and written as JSON next
    to the capture: the ground truth `qosinspect report` should recover. Ctrl-C stops the run
    cleanly and still writes both.
    """
    from ..traffic.builtin import BUILTIN_NAMES, builtin_scenario, resolve_scenario
    from ..traffic.run import RunOptions
    from ..traffic.truth import format_truth

    if list_:
        for name in BUILTIN_NAMES:
            click.echo(f"{name:<16} {builtin_scenario(name).description}")
        return
    if scenario is None:
        raise click.UsageError("give a SCENARIO (built-in name or TOML file); --list shows "
                               "the built-in ones")
    if do_report and capture is None:
        raise click.UsageError("--report needs --capture FILE")
    overrides = {"duration": duration, "drain": drain, "seed": seed, "front_port": front_port,
                 "mqtt_version": MQTT_VERSIONS[mqtt_version] if mqtt_version else None,
                 "broker_address": broker}
    try:
        spec = resolve_scenario(scenario, overrides)
        options = RunOptions(capture=Path(capture) if capture else None,
                             capture_method=capture_method, interface=interface,
                             truth=Path(truth) if truth else None,
                             log=None if quiet else _say)
        result = run_and_report(spec, options)
    except (QosinspectError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except asyncio.CancelledError:
        raise click.ClickException("aborted") from None
    # With --report --format json, standard output is the report alone (a script parses it);
    # what the run did goes to stderr then.
    to_err = do_report and fmt == "json"
    click.echo(format_truth(result.truth), err=to_err)
    if result.capture_path is not None:
        click.echo(f"capture: {result.capture_path} ({result.capture_method})", err=to_err)
    if result.truth_path is not None:
        click.echo(f"ground truth: {result.truth_path}", err=to_err)
    if do_report and result.capture_path is not None:
        from ..report.text import write_report
        from .capture_options import CaptureSource

        source = CaptureSource(str(result.capture_path), tuple(result.ports), True,
                               spec.mqtt_version, "native", same_broker=result.same_broker)
        analysis = source.analyze(packets=False)
        write_report(analysis, fmt, capture=source.command_args())
    if result.interrupted:
        sys.exit(130)

"""``qosinspect audit``: what an attacker could read or do, from a capture (passive) or from a
broker you own (``--broker``/``--tls``, active), as a table, markdown or JSON
(:mod:`qosinspect.audit`). Exits 2 when a finding at or above ``--fail-on`` is present."""

from __future__ import annotations

import ssl

import click

from . import main
from .capture_options import MQTT_VERSIONS
from .output_options import format_option

__all__ = ["audit"]

_SEVERITIES = ["info", "low", "medium", "high", "critical"]


def _hostport(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]"), int(port)


def _tls_context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@main.command()
@click.argument("capture", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on in CAPTURE (1883 always is); repeatable.")
@click.option("--tls-port", "tls_ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another port of MQTT over TLS in CAPTURE (8883 always is); repeatable.")
@click.option("--mqtt-version", type=click.Choice(list(MQTT_VERSIONS)), default="4",
              show_default=True, help="Version for connections whose CONNECT was not captured.")
@click.option("--no-detect", is_flag=True,
              help="Do not look for MQTT on other ports of CAPTURE (by its CONNECT).")
@click.option("--engine", type=click.Choice(["native", "tshark"]), default="native",
              show_default=True, help="Decoder of CAPTURE: qosinspect's own, or Wireshark's.")
@click.option("--tls-keylog", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TLS key log file to decrypt CAPTURE's MQTT over TLS (--engine tshark).")
@click.option("--broker", "broker", metavar="HOST:PORT", default=None,
              help="Without CAPTURE: probe this plain MQTT listener (only a broker you own). "
                   "With CAPTURE: only the connections to this broker (ADDR[:PORT]).")
@click.option("--same-broker", "same_broker", metavar="ADDR:PORT,ADDR:PORT[,...]",
              multiple=True, help="CAPTURE's server endpoints that are one broker (a proxy in "
                                  "front of it); repeatable.")
@click.option("--tls", "tls", metavar="HOST:PORT", default=None,
              help="Probe this MQTT-over-TLS listener (only a broker you own).")
@click.option("--cafile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA certificate to verify the --tls listener with.")
@click.option("--insecure", is_flag=True, help="Do not verify the --tls listener's certificate.")
@click.option("--username", "-u", default=None, help="A user to probe with besides anonymous.")
@click.option("--password", "-P", default=None, help="Its password.")
@click.option("--listen", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to listen to # and $SYS/#.")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--no-write", is_flag=True, help="Skip the probes that publish.")
@click.option("--try-defaults", is_flag=True,
              help="Try a small dictionary of default user names and passwords (rate-limited).")
@click.option("--dry-run", is_flag=True, help="List the probes and exit.")
@format_option("table", "markdown", "json")
@click.option("--fail-on", type=click.Choice(_SEVERITIES), default=None,
              help="Exit 2 when a finding of this severity or worse is present.")
def audit(capture: str | None, ports: tuple[int, ...], tls_ports: tuple[int, ...],
          mqtt_version: str, no_detect: bool, engine: str, tls_keylog: str | None,
          broker: str | None, same_broker: tuple[str, ...], tls: str | None, cafile: str | None,
          insecure: bool, username: str | None, password: str | None, listen: float,
          timeout: float, no_write: bool, try_defaults: bool, dry_run: bool, fmt: str,
          fail_on: str | None) -> None:
    """Audit CAPTURE, or probe a broker with --broker/--tls: what an attacker could read or do.

    Passive (CAPTURE): clear text and credentials, anonymous and default client ids, brute
    force, wildcard and $SYS reads, secrets in payloads, retained messages and wills,
    malformed and oversized packets, client id takeovers, floods, TLS versions and
    certificates; each finding names the frames that prove it. Active (--broker, --tls): bounded
    probes as an ordinary client, only against a broker you own (--dry-run lists them).
    """
    from ..audit import Severity, render
    from ..errors import QosinspectError

    if capture is None and broker is None and tls is None:
        raise click.UsageError("give either CAPTURE or --broker/--tls")
    if capture is not None:
        from ..audit import audit_capture
        from .capture_options import endpoint_groups

        if tls is not None:
            raise click.UsageError("--tls probes a broker: give it without CAPTURE")
        groups = endpoint_groups(same_broker)
        try:
            report = audit_capture(capture, ports=(1883, *ports), tls_ports=(8883, *tls_ports),
                                   detect_any_port=not no_detect,
                                   mqtt_version=MQTT_VERSIONS[mqtt_version], engine=engine,
                                   tls_keylog=tls_keylog, broker=broker, same_broker=groups)
        except (QosinspectError, OSError, ValueError) as exc:
            msg = str(exc)
            raise click.ClickException(msg if capture in msg else f"{capture}: {msg}") \
                from None
    else:
        from ..audit.active import ProbeOptions, plan, probe_broker
        from ..audit.link import Target

        targets = []
        if broker:
            targets.append(Target(*_hostport(broker, "--broker")))
        if tls:
            targets.append(Target(*_hostport(tls, "--tls"), tls=_tls_context(cafile, insecure)))
        opts = ProbeOptions(username, password, listen, timeout, try_defaults=try_defaults,
                            write=not no_write)
        if dry_run:
            click.echo("\n".join(plan(targets, opts)))
            return
        try:
            report = probe_broker(targets, opts)
        except ConnectionError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(render(report, fmt))
    if fail_on is not None and report.fails(Severity.parse(fail_on)):
        raise SystemExit(2)

"""Options shared by the commands that analyse a capture, defined once as decorators.

``@capture_source`` adds the CAPTURE argument and the decoder options (``--port``,
``--no-detect``, ``--mqtt-version``, ``--engine``, ``--tls-keylog``) and hands the command one
:class:`CaptureSource` (``decode`` streams its events, the others analyse it);
``@time_window`` adds ``--since``/``--until``; ``@client_or_conn`` adds ``--client``/``--conn``.
:meth:`CaptureSource.reading` (around :meth:`~CaptureSource.analyze` and the iteration of
:meth:`~CaptureSource.events`) turns every bad input into a :class:`click.ClickException` (a
message and exit status 1, never a traceback), and
:func:`finish` makes a capture that could not be read to the end exit 1 after the output.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ..errors import QosinspectError

if TYPE_CHECKING:
    from ..capture.decoder import EventStream

__all__ = ["MQTT_VERSIONS", "CaptureSource", "capture_source", "check_window", "client_or_conn",
           "finish", "resolve_time", "resolve_window", "time_window"]

F = TypeVar("F", bound=Callable[..., Any])
#: --mqtt-version choices -> protocol level (decode, report and the others, generate, replay).
MQTT_VERSIONS = {"3": 3, "3.1": 3, "4": 4, "3.1.1": 4, "5": 5, "5.0": 5}


@dataclass(frozen=True)
class CaptureSource:
    """What to decode and how."""

    path: str
    ports: tuple[int, ...]
    detect_any_port: bool
    mqtt_version: int
    engine: str
    tls_keylog: str | None = None
    #: ``--broker ADDR[:PORT]``: only the connections to that broker.
    broker: str | None = None
    #: ``--same-broker A,B``: endpoints that are one broker (a proxy in front of it).
    same_broker: tuple[tuple[str, ...], ...] = ()

    def command_args(self) -> str:
        """CAPTURE and the decoder options that differ from the defaults, quoted for a shell:
        what the commands a report suggests (``qosinspect flows ...``) need to see the same
        connections."""
        args = [self.path]
        args += [f"-p {p}" for p in dict.fromkeys(self.ports) if p != 1883]
        if not self.detect_any_port:
            args.append("--no-detect")
        if self.mqtt_version != 4:
            args.append(f"--mqtt-version {self.mqtt_version}")
        if self.engine != "native":
            args.append(f"--engine {self.engine}")
        if self.tls_keylog:
            args.append(f"--tls-keylog {shlex.quote(self.tls_keylog)}")
        if self.broker:
            args.append(f"--broker {shlex.quote(self.broker)}")
        args += [f"--same-broker {shlex.quote(','.join(g))}" for g in self.same_broker]
        args[0] = shlex.quote(args[0])
        return " ".join(args)

    def analyze(self, *, detail: bool = True, packets: bool = True,
                deliveries: bool = True) -> Any:
        """:func:`qosinspect.analysis.api.analyze_capture` with this source's decoder options and
        what to keep (the :class:`~qosinspect.analysis.options.AnalysisOptions` fields)."""
        from ..analysis.api import analyze_capture
        from ..analysis.options import AnalysisOptions
        from .progress import Progress

        progress = Progress(sys.stderr, lambda: (0, 0)) if sys.stderr.isatty() else None
        options = AnalysisOptions(detail=detail, packets=packets, deliveries=deliveries,
                                  same_broker=self.same_broker)
        with self.reading():
            try:
                return analyze_capture(self.path, ports=self.ports,
                                       detect_any_port=self.detect_any_port,
                                       mqtt_version=self.mqtt_version, engine=self.engine,
                                       tls_keylog=self.tls_keylog, options=options,
                                       broker=self.broker,
                                       progress=progress.update if progress else None)
            finally:
                if progress is not None:
                    progress.close()

    def audit(self) -> Any:
        """:func:`qosinspect.audit.audit_capture` of this source (``None`` for standard input,
        which can be read only once: the analysis had it)."""
        if self.path == "-":
            return None
        from ..audit import audit_capture

        with self.reading():
            return audit_capture(self.path, ports=self.ports,
                                 detect_any_port=self.detect_any_port,
                                 mqtt_version=self.mqtt_version, engine=self.engine,
                                 tls_keylog=self.tls_keylog, broker=self.broker,
                                 same_broker=self.same_broker)

    def events(self, *, keep_tcp_stats: bool = True) -> EventStream:
        """:func:`qosinspect.drivers.iter_capture_events` with this source's options (lazy:
        errors come while iterating, so iterate inside :meth:`reading`)."""
        from ..drivers import iter_capture_events

        stream = iter_capture_events(self.path, ports=self.ports,
                                     detect_any_port=self.detect_any_port,
                                     mqtt_version=self.mqtt_version, engine=self.engine,
                                     tls_keylog=self.tls_keylog, keep_tcp_stats=keep_tcp_stats)
        if self.broker is None:
            return stream
        from ..capture.brokers import only_broker, parse_broker

        return cast("EventStream", only_broker(stream, parse_broker(self.broker)))

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A capture that cannot be read (or a decoder that cannot run) becomes a message
        that names the file once, and exit status 1."""
        try:
            yield
        except BrokenPipeError:
            raise                   # the reader of the output went away: main() ends quietly
        except (QosinspectError, OSError, ValueError) as exc:
            msg = str(exc)
            raise click.ClickException(msg if self.path in msg else f"{self.path}: {msg}") \
                from None


def capture_source(f: F) -> F:
    """CAPTURE and the decoder options; the command receives ``source: CaptureSource``."""

    @click.argument("capture", type=click.Path(dir_okay=False, allow_dash=True))
    @click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
                  help="Another TCP port MQTT runs on (1883 always is); repeatable.")
    @click.option("--no-detect", is_flag=True,
                  help="Do not look for MQTT (a CONNECT or an MQTT WebSocket upgrade) on other "
                       "ports.")
    @click.option("--mqtt-version", type=click.Choice(list(MQTT_VERSIONS)), default="4",
                  show_default=True,
                  help="Version for connections whose CONNECT is not in the capture and whose "
                       "bytes do not tell (3 = 3.1, 4 = 3.1.1, 5 = 5.0).")
    @click.option("--engine", type=click.Choice(["native", "tshark"]), default="native",
                  show_default=True,
                  help="native: qosinspect's decoder; tshark: Wireshark's dissector "
                       "(a cross-check).")
    @click.option("--tls-keylog", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="TLS key log file (SSLKEYLOGFILE), to decrypt MQTT over TLS "
                       "(needs --engine tshark).")
    @click.option("--broker", "broker", metavar="ADDR[:PORT]", default=None,
                  help="Only the connections to this broker (a capture may hold several).")
    @click.option("--same-broker", "same_broker", metavar="ADDR:PORT,ADDR:PORT[,...]",
                  multiple=True,
                  help="These server endpoints are one broker (a proxy or load balancer in "
                       "front of it); repeatable. Otherwise each address and port is a broker.")
    @functools.wraps(f)
    def wrapper(*args: Any, capture: str, ports: tuple[int, ...], no_detect: bool,
                mqtt_version: str, engine: str, tls_keylog: str | None, broker: str | None,
                same_broker: tuple[str, ...], **kwargs: Any) -> Any:
        if tls_keylog and engine != "tshark":
            raise click.UsageError("--tls-keylog needs --engine tshark")
        if broker is not None:
            from ..capture.brokers import parse_broker

            try:
                parse_broker(broker)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--broker") from None
        source = CaptureSource(capture, (1883, *ports), not no_detect, MQTT_VERSIONS[mqtt_version],
                               engine, tls_keylog, broker, endpoint_groups(same_broker))
        return f(*args, source=source, **kwargs)

    return wrapper  # type: ignore[return-value]


def endpoint_groups(values: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """``--same-broker`` values (``ADDR:PORT,ADDR:PORT``) as groups of endpoints written as the
    connections table writes them."""
    from ..capture.brokers import parse_broker

    groups = []
    for value in values:
        group = []
        for part in value.split(","):
            try:
                spec = parse_broker(part)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--same-broker") from None
            if spec.port is None:
                raise click.BadParameter(f"{part!r}: give the port too (ADDR:PORT)",
                                         param_hint="--same-broker")
            group.append(str(spec))
        if len(group) < 2:
            raise click.BadParameter(f"{value!r}: name two endpoints or more, comma separated",
                                     param_hint="--same-broker")
        groups.append(tuple(group))
    return tuple(groups)


def time_window(f: F) -> F:
    """``--since T`` and ``--until T``: seconds since the capture start, an ISO 8601 time (UTC
    unless it says otherwise) or a time of day (see :func:`resolve_time`)."""
    f = click.option("--until", "until", metavar="T", default=None,
                     help="Stop at T (seconds since the capture start, an ISO 8601 time as "
                          "flows prints it, or a UTC time of day).")(f)
    f = click.option("--since", "since", metavar="T", default=None,
                     help="Start at T (seconds since the capture start, an ISO 8601 time as "
                          "flows prints it, or a UTC time of day).")(f)
    return f


def client_or_conn(f: F) -> F:
    """``--client ID`` or ``--conn N`` (which connections to show)."""
    f = click.option("--conn", "conn", type=click.IntRange(0), default=None,
                     help="Connection number (as in the connections table).")(f)
    f = click.option("--client", "client", default=None, help="Client id.")(f)
    return f


def resolve_time(value: str | None, t0: int | None, option: str) -> int | None:
    """A ``--since``/``--until`` value as ns since the epoch (``t0``: the capture start).

    Seconds since the capture start; an ISO 8601 date and time (UTC unless it says otherwise),
    to the nanosecond as the commands print them (:func:`qosinspect.report.output.format_time`);
    or a time of day (``06:28:28.44``), on the capture start's UTC date.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise click.BadParameter(f"{value!r} is not a time", param_hint=option)
        return (t0 or 0) + round(seconds * 1e9)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        try:
            tod = time.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is neither seconds nor an ISO 8601 time",
                                     param_hint=option) from None
        day = datetime.fromtimestamp((t0 or 0) // 10**9, UTC).date()
        dt = datetime.combine(day, tod)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    # datetime keeps microseconds: the nanoseconds of a longer fraction are added back, so an
    # exact time printed by flows/export (…13.424008658Z) selects exactly that packet
    frac = re.search(r"\d[.,](\d{7,})", value)
    if frac:
        ns += int(frac.group(1)[6:9].ljust(3, "0"))
    return ns


def check_window(since: str | None, until: str | None) -> None:
    """``--since``/``--until`` that cannot be read fail before the capture is analysed (which
    can take a while), not after."""
    resolve_time(since, 0, "--since")
    resolve_time(until, 0, "--until")


def resolve_window(since: str | None, until: str | None, t0: int | None
                   ) -> tuple[int | None, int | None]:
    """``--since``/``--until`` as ns since the epoch; an empty window (since after until) is a
    usage error rather than an empty diagram."""
    lo = resolve_time(since, t0, "--since")
    hi = resolve_time(until, t0, "--until")
    if lo is not None and hi is not None and lo > hi:
        raise click.BadParameter(f"{since!r} is after --until {until!r}", param_hint="--since")
    return lo, hi


def finish(analysis: Any) -> None:
    """After the output: a capture that could not be read to the end is an error (exit 1)."""
    if analysis.capture_error is not None:
        msg = str(analysis.capture_error)
        where = msg if str(analysis.source) in msg else f"{analysis.source}: {msg}"
        click.echo(f"Error: {where} (the output covers what was read before it)", err=True)
        raise SystemExit(1)

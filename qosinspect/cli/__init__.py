"""The ``qosinspect`` command: thin click shells over the library, one module per command."""

from __future__ import annotations

import click

from .. import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qosinspect")
def main() -> None:
    """Show what MQTT's Quality of Service does on the wire.

    Decode captures, follow every QoS 1 and 2 handshake, time each step, and see what was
    retransmitted, duplicated or lost around reconnections.
    """


from . import broker as _broker  # noqa: E402,F401  (registers "broker" and "passwd")
from . import decode as _decode  # noqa: E402,F401  (registers "decode")
from . import demo as _demo  # noqa: E402,F401  (registers "demo")
from . import export as _export  # noqa: E402,F401  (registers "export")
from . import flows as _flows  # noqa: E402,F401  (registers "flows")
from . import generate as _generate  # noqa: E402,F401  (registers "generate")
from . import ladder as _ladder  # noqa: E402,F401  (registers "ladder")
from . import notebook as _notebook  # noqa: E402,F401  (registers "notebook")
from . import plot as _plot  # noqa: E402,F401  (registers "plot")
from . import pub as _pub  # noqa: E402,F401  (registers "pub")
from . import replay as _replay  # noqa: E402,F401  (registers "replay")
from . import report as _report  # noqa: E402,F401  (registers "report")
from . import sub as _sub  # noqa: E402,F401  (registers "sub")

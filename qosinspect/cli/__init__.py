"""The ``qosinspect`` command: thin click shells over the library, one module per command.

The command modules are imported when their command is asked for (:class:`LazyGroup`), not
when the ``qosinspect`` program starts: importing all of them pulls in the broker, the client,
asyncio and the traffic generator, about 0.2 s of CPU that ``qosinspect report`` on a
capture does not need. ``qosinspect --help`` still lists every command with its summary (it
imports them all to ask).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__

__all__ = ["COMMANDS", "LazyGroup", "main"]

#: Command name -> the module of this package that defines it (registering it on ``main``
#: when imported).
COMMANDS = {
    "audit": "audit", "batch": "batch", "broker": "broker", "passwd": "broker",
    "compare": "compare",
    "decode": "decode", "demo": "demo", "export": "export", "flows": "flows",
    "generate": "generate", "ladder": "ladder",
    "notebook": "notebook", "plot": "plot", "pub": "pub", "replay": "replay",
    "query": "query", "report": "report", "sub": "sub", "watch": "watch",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (see the module docstring)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in COMMANDS:
            importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}")  # registers it
            cmd = super().get_command(ctx, cmd_name)
        return cmd

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader of the output went away (``| head``): stop quietly with success, as
            # tshark does, instead of a traceback or an error about a closed pipe. stdout is
            # pointed at /dev/null so that the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    """``--version``: the version and which compiled parts this process runs (the mypyc build of
    the analysis, the C accelerator), loaded only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from .._accel import describe

    click.echo(f"qosinspect, version {__version__}\n{describe()}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version, which compiled parts run, and exit.")
def main() -> None:
    """Show what MQTT's Quality of Service does on the wire.

    Decode captures, follow every QoS 1 and 2 handshake, time each step, and see what was
    retransmitted, duplicated or lost around reconnections.
    """

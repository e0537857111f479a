"""Output options shared by the commands, defined once: ``--format`` (choices taken from the
output layer's formats, :data:`qosinspect.report.output.FORMATS`), ``--output FILE``, and
:func:`writing`, which turns a file that cannot be written into a message (exit 1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from ..report.output import DOCUMENT_FORMATS, FORMATS

__all__ = ["format_option", "output_file", "writing"]

F = TypeVar("F", bound=Callable[..., Any])

def format_option(*choices: str, default: str = "table",
                  help: str = "Output format.") -> Callable[[F], F]:
    """``--format`` with ``choices`` (a subset of the output layer's formats, of tables or
    documents); the command receives it as ``fmt``."""
    unknown = set(choices) - set(FORMATS) - set(DOCUMENT_FORMATS)
    if unknown or default not in choices:
        raise ValueError(f"formats {sorted(unknown)} / default {default!r}: not an output format")
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help=help)


def output_file(f: F) -> F:
    """``--output/-o FILE`` (standard output when not given); the command receives ``output``.
    A binary format (parquet) without it is a usage error, raised before any work is done."""
    return click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                        default=None, callback=_needs_file,
                        help="Write to FILE instead of standard output (needed for "
                             "parquet).")(f)


def _needs_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None and ctx.params.get("fmt") == "parquet":
        raise click.UsageError("--format parquet needs --output FILE")
    return value


@contextlib.contextmanager
def writing(target: object) -> Iterator[None]:
    """Around the writing of output to ``target`` (a file or directory name; None: standard
    output): an ``OSError`` becomes a message naming it; a reader that went away (``| head``)
    is left to the command group's quiet ending."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise click.ClickException(f"{target}: {exc}" if target is not None else str(exc)) \
            from None

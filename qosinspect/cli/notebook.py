"""``qosinspect notebook``: where the Jupyter notebooks are, how to open them, and JupyterLab on
them with ``--lab``.

The notebooks live in ``notebooks/`` of the source tree (beside the package), not in the
package: they are documents to open and change, and they read ``captures/`` next to them. Each
one's title is the first heading of its first cell, so this listing never disagrees with them.
JupyterLab comes with the ``notebooks`` extra (``pip install 'qosinspect[notebooks]'``).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
from pathlib import Path

import click

from . import main

__all__ = ["find_notebooks", "lab_command", "notebook", "notebook_title"]

#: The source tree's notebooks folder, when the package runs from a checkout (editable install).
SOURCE_NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"


def find_notebooks(folder: Path = SOURCE_NOTEBOOKS) -> list[Path]:
    """The ``.ipynb`` files of ``folder``, sorted; a clear error when there are none."""
    found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if not found:
        raise click.ClickException(
            f"no notebooks in {folder}: they ship with the source repository (notebooks/ beside "
            "the qosinspect package), not with an installed wheel; clone the repository and "
            "install it with pip install -e '.[notebooks]'")
    return found


def notebook_title(path: Path) -> str:
    """The first heading of the notebook's first markdown cell (or its file name)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return "(cannot be read)"
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            text = "".join(src) if isinstance(src, list) else str(src)
            for line in text.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def lab_command(folder: Path, target: Path | None = None, *, port: int | None = None,
                browser: bool = True) -> list[str]:
    """The command that starts JupyterLab on ``folder`` (opening ``target`` if given), run with
    this Python so it uses this environment's kernel and qosinspect."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}"]
    if target is not None:
        cmd.append(str(target))
    if port is not None:
        cmd.append(f"--port={port}")
    if not browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")      # JupyterLab refuses root without it
    return cmd


def _jupyter() -> str:
    """``jupyter`` of this environment (a venv's bin need not be on PATH)."""
    beside = Path(sys.executable).parent / "jupyter"
    return str(beside) if beside.exists() else "jupyter"


def _pick(notebooks: list[Path], name: str) -> Path:
    by_name = {p.stem: p for p in notebooks}
    stem = name.removesuffix(".ipynb")
    if stem in by_name:
        return by_name[stem]
    starting = [s for s in by_name if s.startswith(stem)]
    if stem and len(starting) == 1:
        return by_name[starting[0]]
    close = difflib.get_close_matches(stem, list(by_name), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise click.ClickException(f"no notebook named {name!r}{hint}; there are: "
                               f"{', '.join(by_name)}")


@main.command()
@click.argument("name", required=False)
@click.option("--lab", is_flag=True,
              help="Start JupyterLab on the notebooks folder (on NAME if given).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="JupyterLab's port (default: its own, 8888 or the next free one).")
@click.option("--no-browser", is_flag=True, help="With --lab: do not open a browser.")
def notebook(name: str | None, lab: bool, port: int | None, no_browser: bool) -> None:
    """List the Jupyter notebooks and say how to open them; --lab starts JupyterLab on them.

    reconnection: QoS 0, 1 and 2 through a subscriber's reconnection, run live from the
    notebook. capture-tour: a real capture, table by table. qos-under-impairment: latency and
    retransmissions per QoS as delay and loss grow. Each runs top to bottom in under a minute.
    """
    notebooks = find_notebooks()
    folder = notebooks[0].parent
    target = _pick(notebooks, name) if name else None
    have_lab = importlib.util.find_spec("jupyterlab") is not None
    if lab:
        if not have_lab:
            raise click.ClickException("JupyterLab is not installed in this environment: "
                                       "pip install 'qosinspect[notebooks]' (make test "
                                       "installs it)")
        cmd = lab_command(folder, target, port=port, browser=not no_browser)
        click.echo("starting: " + " ".join(cmd), err=True)
        sys.stdout.flush()
        os.execv(cmd[0], cmd)
    shown = [target] if target is not None else notebooks
    click.echo(f"qosinspect notebooks in {folder}:")
    width = max(len(p.name) for p in shown)
    for path in shown:
        click.echo(f"  {path.name:<{width}}  {notebook_title(path)}")
    click.echo("")
    click.echo("Open them in JupyterLab:")
    suffix = f" {target.stem}" if target is not None else ""
    click.echo(f"  qosinspect notebook --lab{suffix}")
    jupyter = _jupyter()
    click.echo(f"  or: {jupyter} lab {target or folder}")
    click.echo("Run one without a browser (outputs into a copy):")
    example = target or folder / "capture-tour.ipynb"
    click.echo(f"  {jupyter} nbconvert --to notebook --execute {example} --output-dir /tmp")
    click.echo("Each has its parameters in its first code cell; change them and run all cells.")
    if not have_lab:
        click.echo("JupyterLab is not installed here: pip install 'qosinspect[notebooks]' "
                   "(make test installs it).")

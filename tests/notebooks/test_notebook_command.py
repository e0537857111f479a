"""``qosinspect notebook``: the listing, choosing one, and the JupyterLab command (not started:
``os.execv`` is replaced, so the test process is never swapped for a server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.cli import notebook as nbcli
from qosinspect.testing.tools import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["notebook", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout, res.stderr


def test_lists_every_notebook_with_its_title_and_how_to_open_it() -> None:
    code, out, _ = run()
    assert code == 0
    assert str(NOTEBOOKS) in out
    for path in NOTEBOOKS.glob("*.ipynb"):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        heading = "".join(cells[0]["source"]).splitlines()[0].lstrip("# ")
        assert f"{path.name}  " in out and heading in out
    assert "qosinspect notebook --lab" in out and "nbconvert --to notebook --execute" in out


@pytest.mark.parametrize("name", ["reconnection", "reconnection.ipynb", "recon"])
def test_one_notebook_by_name_or_unique_prefix(name: str) -> None:
    code, out, _ = run(name)
    assert code == 0
    assert "reconnection.ipynb" in out and "capture-tour" not in out
    assert "qosinspect notebook --lab reconnection" in out


@pytest.mark.parametrize("name", ["nope", "capture-tours"])
def test_unknown_name_is_an_error_naming_the_notebooks(name: str) -> None:
    code, _, err = run(name)
    assert code == 1
    assert f"no notebook named {name!r}" in err and "capture-tour" in err and "Traceback" not in err


def test_lab_starts_jupyterlab_on_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))

    monkeypatch.setattr(nbcli.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(nbcli.os, "execv", fake_execv)
    code, _, err = run("--lab", "capture-tour", "--no-browser", "--port", "8899")
    assert code == 0, err
    (path, argv), = calls
    assert path == sys.executable and argv[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={NOTEBOOKS}" in argv
    assert str(NOTEBOOKS / "capture-tour.ipynb") in argv
    assert "--no-browser" in argv and "--port=8899" in argv
    assert "starting: " in err


def test_lab_without_jupyterlab_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = nbcli.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "jupyterlab" else real(name, *args)

    monkeypatch.setattr(nbcli.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(nbcli.os, "execv", lambda *a: pytest.fail("must not start anything"))
    code, _, err = run("--lab")
    assert code == 1 and "pip install 'qosinspect[notebooks]'" in err
    code, out, _ = run()
    assert code == 0 and "JupyterLab is not installed here" in out


def test_lab_command_as_root_and_not(monkeypatch: pytest.MonkeyPatch) -> None:
    for uid, allowed in ((0, True), (1000, False)):
        monkeypatch.setattr(nbcli.os, "geteuid", lambda uid=uid: uid)
        cmd = nbcli.lab_command(Path("/x"))
        assert ("--allow-root" in cmd) is allowed
        assert "--no-browser" not in cmd and not any(c.startswith("--port") for c in cmd)


def test_no_notebooks_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(click.ClickException, match="ship with the source repository"):
        nbcli.find_notebooks(tmp_path / "missing")
    with pytest.raises(click.ClickException, match="no notebooks in"):
        nbcli.find_notebooks(tmp_path)


def test_title_is_the_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": "# a comment, not a title"},
        {"cell_type": "markdown", "source": ["Some text\n", "## The title\n"]}]}))
    assert nbcli.notebook_title(path) == "The title"
    path.write_text("{not json")
    assert nbcli.notebook_title(path) == "(cannot be read)"
    path.write_text(json.dumps({"cells": []}))
    assert nbcli.notebook_title(path) == "x"

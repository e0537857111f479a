"""The command modules load on demand (qosinspect/cli/__init__.py): the table of commands is
complete and right, and starting the program imports none of them."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

from click.testing import CliRunner

import qosinspect.cli as cli
from qosinspect.cli import COMMANDS, main


def test_the_table_names_every_command_and_its_module() -> None:
    modules = [m.name for m in pkgutil.iter_modules(cli.__path__)]
    for name in modules:
        importlib.import_module(f"qosinspect.cli.{name}")
    registered = {name: cmd.callback.__module__.rsplit(".", 1)[1]
                  for name, cmd in main.commands.items() if cmd.callback is not None}
    assert registered == COMMANDS


def test_startup_imports_no_command_module() -> None:
    code = ("import sys; from qosinspect.cli import main, COMMANDS; "
            "print(sorted(m for m in sys.modules if m.startswith('qosinspect.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_command_loads_when_asked_for_and_help_lists_them_all() -> None:
    code = ("import sys; from click.testing import CliRunner; from qosinspect.cli import main; "
            "r = CliRunner().invoke(main, ['report', '--help']); assert r.exit_code == 0, r; "
            "print(sorted(m for m in sys.modules if m.startswith('qosinspect.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ("['qosinspect.cli.capture_options', 'qosinspect.cli.output_options', "
                           "'qosinspect.cli.report']")
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    listed = res.stdout.split("Commands:")[1].split()
    assert set(COMMANDS) <= set(listed)


def test_an_unknown_command_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["no-such-command"])
    assert res.exit_code == 2 and "No such command" in res.stderr

"""A dataset of shipped captures (two of them damaged on purpose), built once per session by
``qosinspect batch`` on two local processes, and the single-capture analyses to check it by."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.cli import main
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"
#: The good captures of the dataset and their firmware tag (from the tags CSV).
GOOD = {"gen-qos0.pcap": "3.5", "gen-qos1.pcap": "3.5", "gen-qos2.pcap": "3.7",
        "gen-reconnect.pcap": "3.7", "paho-v311-v5.pcap": "3.7",
        "nested/mosquitto-redelivery.pcap": None}


@dataclass
class Built:
    folder: Path
    root: Path
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout, res.stderr


def make_folder(folder: Path) -> Path:
    """The good captures (one in a sub-folder), a file that is no capture, and a capture cut
    in the middle of a record."""
    (folder / "nested").mkdir(parents=True)
    for name in GOOD:
        shutil.copy(CAPTURES / Path(name).name, folder / name)
    (folder / "garbage.pcap").write_bytes(b"this is not a capture at all" * 10)
    data = (CAPTURES / "gen-qos2.pcap").read_bytes()
    (folder / "cut.pcap").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not a capture: ignored")
    return folder


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("batch")
    folder = make_folder(base / "runs")
    tags = base / "tags.csv"
    tags.write_text("capture,firmware,site\n"
                    + "".join(f"{Path(n).name},{fw},lab\n" for n, fw in GOOD.items() if fw))
    root = base / "dataset"
    code, out, err = run_cli("batch", str(folder), "-o", str(root), "--jobs", "2",
                             "--tag", "site=default", "--tag", "build=42",
                             "--tags-csv", str(tags))
    return Built(folder, root, code, out, err)


@pytest.fixture(scope="session")
def single() -> dict[str, Any]:
    """Each good capture analysed alone, with the options batch uses."""
    return {name: analyze_capture(CAPTURES / Path(name).name,
                                  options=AnalysisOptions(packets=False))
            for name in GOOD}

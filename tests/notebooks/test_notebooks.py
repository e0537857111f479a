"""The notebooks: committed without outputs, and each runs top to bottom in a fresh kernel.

Each notebook asserts on its own evidence (``assert`` cells next to the tables they check: QoS 0
lost during the outage, QoS 1 duplicates equal to what the subscriber counted, QoS 2 exactly
once, handshakes no faster than the added delay allows, ...), so a notebook that runs to the end
has shown what it claims. On top of that this test checks that the key cells produced real
output: the figures, and the lines the check cells print. ``OUT_DIR`` is set to a temporary
folder in the parameters cell, as papermill would inject it, so captures land there.

Executing needs the notebook extra (nbclient, nbformat, ipykernel): skipped on a developer's
machine without it, a failure under CI=true (``make test`` installs it).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qosinspect.testing.tools import IN_CI, PROJECT_ROOT

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
STRIP = PROJECT_ROOT / "scripts" / "strip-notebooks.py"

#: Per notebook: figures it must show, text its check cells print, files it writes to OUT_DIR.
EXPECTED: dict[str, dict[str, Any]] = {
    "reconnection.ipynb": {
        "figures": 5,
        "texts": ["QoS 0 lost, according to the capture:", "the subscriber's own count",
                  "checked: QoS 0 losses grow with the outage"],
        "files": ["reconnection.pcapng", "reconnection.truth.json", "reconnection-sweep.png"],
    },
    "capture-tour.ipynb": {
        "figures": 2,
        "texts": ["mosquitto-redelivery.pcap", "ladder of redeliver-v4",
                  "the first 13 of 214 frames cut off"],
        "files": [],
    },
    "qos-under-impairment.ipynb": {
        "figures": 3,
        "texts": ["checked: every QoS 1 handshake took at least 2 x delay",
                  "checked: QoS 1/2 never lose, QoS 2 never duplicates"],
        "files": ["delay-0ms.pcapng", "loss-0.1.pcapng", "qos-under-delay.png",
                  "qos-under-delay.svg", "qos-under-loss.png", "qos-under-loss.svg"],
    },
}


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        message = (f"{module} is not installed: pip install -e '.[notebooks]' "
                   "(make test installs it)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((NOTEBOOKS_DIR / name).read_text(encoding="utf-8"))
    return data


def _source(cell: dict[str, Any]) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else str(src)


def test_the_notebooks_are_the_expected_ones() -> None:
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_without_outputs(name: str) -> None:
    nb = _load(name)
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert set(nb["metadata"].get("language_info", {"name": "python"})) == {"name"}, \
        "run make notebooks-clean: language_info holds the kernel's version details"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name} cell {i} has outputs: make notebooks-clean"
            assert cell["execution_count"] is None, f"{name} cell {i}: make notebooks-clean"
        assert not {"execution", "collapsed", "scrolled"} & set(cell.get("metadata", {}))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameters_first_and_text_beside_the_code(name: str) -> None:
    """Parameters at the top (tagged like papermill's), explanations between the code cells."""
    cells = _load(name)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert "OUT_DIR" in _source(code[0]) or name == "capture-tour.ipynb"
    text = [c for c in cells if c["cell_type"] == "markdown"]
    assert len(text) >= len(code) // 3, "a teaching notebook explains as it goes"
    assert sum(len(_source(c)) for c in text) > 3000


def test_strip_script_removes_outputs_and_is_idempotent(tmp_path: Path) -> None:
    nbformat = _need("nbformat")
    nb = nbformat.read(NOTEBOOKS_DIR / "capture-tour.ipynb", as_version=4)
    clean = nbformat.writes(nb) + "\n"      # nbformat.write ends the file with a newline
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, path)
    check = [sys.executable, str(STRIP), "--check", str(path)]
    res = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "dirty.ipynb" in res.stderr
    res = subprocess.run([sys.executable, str(STRIP), str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert path.read_text(encoding="utf-8") == clean
    res = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def _outputs(nb: Any) -> tuple[int, str, list[str]]:
    """Figures shown, all text shown, and the errors, of an executed notebook."""
    figures, texts, errors = 0, [], []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell not executed:\n{cell.source}"
        for out in cell.outputs:
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type == "error":
                errors.append(f"{out.ename}: {out.evalue}")
            else:
                data = out.get("data", {})
                figures += "image/png" in data
                texts.append(data.get("text/plain", ""))
                texts.append(data.get("text/html", ""))
    return figures, "\n".join(texts), errors


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_runs_top_to_bottom_in_a_fresh_kernel(name: str, tmp_path: Path) -> None:
    nbformat = _need("nbformat")
    nbclient = _need("nbclient")
    _need("ipykernel")
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    params = nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")]
    if "OUT_DIR" in params.source:
        params.source += f"\nOUT_DIR = {str(tmp_path)!r}  # injected by the test\n"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # the kernel's inline one
    client = nbclient.NotebookClient(nb, timeout=150, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{name} failed:\n" + re.sub(r"\x1b\[[0-9;]*m", "", str(exc)))
    figures, text, errors = _outputs(nb)
    assert not errors, errors
    want = EXPECTED[name]
    assert figures >= want["figures"], f"{name} showed {figures} figures"
    for line in want["texts"]:
        assert line in text, f"{name}: no output contains {line!r}"
    written = {p.name for p in tmp_path.iterdir()}
    assert set(want["files"]) <= written, sorted(written)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_capture_tour_reads_any_capture_from_anywhere(tmp_path: Path) -> None:
    """An absolute path outside the repository, a broker on another port, run from another
    folder, and no client named: the tour still runs (it used to end in a bare StopIteration
    looking for captures/ above the working folder, and had no port parameter)."""
    nbformat = _need("nbformat")
    nbclient = _need("nbclient")
    _need("ipykernel")
    capture = tmp_path / "field.pcap"
    capture.write_bytes((PROJECT_ROOT / "captures" / "gen-port-18830.pcap").read_bytes())
    nb = nbformat.read(NOTEBOOKS_DIR / "capture-tour.ipynb", as_version=4)
    params = nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")]
    params.source += (f"\nCAPTURE = {str(capture)!r}\nPORTS = (18830,)\nLADDER_CLIENT = None"
                      "  # injected by the test\n")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    client = nbclient.NotebookClient(nb, timeout=150, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail("capture-tour failed:\n" + re.sub(r"\x1b\[[0-9;]*m", "", str(exc)))
    figures, text, errors = _outputs(nb)
    assert not errors and figures >= 2, (errors, figures)
    assert "(not one of the shipped captures)" in text
    assert "ladder of pub" in text or "ladder of sub" in text   # the client with re-sends

"""The analysis compiled with mypyc and interpreted: the compiled one is what runs, and both give
the same answers.

There is one copy of the rules (qosinspect/analysis and qosinspect/mqtt/transitions.py, in
Python). setup.py compiles it with mypyc when it can; ``QOSINSPECT_PURE=1`` makes a process import
the ``.py`` files instead. These tests check that an install with a compiler really runs the
compiled modules (not a silent fallback), and that every table, the report and the flows of the
shipped and shared captures are the same both ways. (``make test`` also runs tests/analysis once
more with ``QOSINSPECT_PURE=1``: every rule test passes on both.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qosinspect import _accel
from qosinspect.analysis.api import analyze_capture
from qosinspect.testing.tools import PROJECT_ROOT, community_captures, shared_captures

CAPTURES = PROJECT_ROOT / "captures"
PORTS = {e["file"]: tuple(e["ports"])
         for e in json.loads((CAPTURES / "captures.json").read_text())}

#: Writes every table of each capture as parquet, and the report JSON, under OUT/<capture>/.
EXPORT = """
import json, sys
from pathlib import Path
from qosinspect import _accel
from qosinspect.analysis.api import analyze_capture
out = Path(sys.argv[1])
for spec in json.loads(sys.argv[2]):
    a = analyze_capture(spec["path"], ports=tuple(spec["ports"]))
    assert a.result.implementation == _accel.analysis_implementation()
    d = out / Path(spec["path"]).name
    d.mkdir(parents=True)
    for name, df in a.tables().items():
        df.to_parquet(d / f"{name}.parquet")
    (d / "report.json").write_text(json.dumps(a.report(), sort_keys=True))
print(_accel.analysis_implementation())
"""


def require_compiled() -> None:
    """Skip where the analysis is not compiled (no compiler at install time); under CI=true
    (which builds it) that is a failure, unless QOSINSPECT_PURE asked for the .py files."""
    if _accel.analysis_implementation() == "mypyc":
        return
    if os.environ.get("CI") == "true" and os.environ.get("QOSINSPECT_PURE", "") in ("", "0"):
        pytest.fail(f"the analysis is not compiled ({_accel.analysis_implementation()}): "
                    "setup.py builds it with mypyc (it needs gcc and the Python headers)")
    pytest.skip("the analysis is not compiled, or QOSINSPECT_PURE is set")


def _captures() -> list[dict[str, object]]:
    ours: list[dict[str, object]] = [{"path": str(CAPTURES / name), "ports": list(ports)}
                                     for name, ports in sorted(PORTS.items())]
    shared = shared_captures()
    theirs: list[dict[str, object]] = [{"path": str(p), "ports": [1883]}
                                       for p in sorted(shared.glob("*.pcap*"))]
    theirs += [{"path": str(p), "ports": list(ports)} for p, ports in community_captures()]
    return ours + theirs


def test_setup_compiles_the_modules_accel_names() -> None:
    """setup.py's COMPILED (files) and _accel.COMPILED (module names) are one list written
    twice (setup.py cannot import the package it builds): they must not drift apart."""
    import ast

    tree = ast.parse((PROJECT_ROOT / "setup.py").read_text())
    files = next(ast.literal_eval(node.value) for node in tree.body
             if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
             and node.targets[0].id == "COMPILED")
    assert [f.removesuffix(".py").replace("/", ".") for f in files] == list(_accel.COMPILED)


def test_a_shipped_capture_is_analysed_by_the_compiled_modules() -> None:
    require_compiled()
    a = analyze_capture(CAPTURES / "gen-reconnect.pcap", ports=PORTS["gen-reconnect.pcap"])
    assert a.result.implementation == "mypyc"
    for name in _accel.COMPILED:
        module = sys.modules[name]
        assert not str(module.__file__).endswith(".py"), (name, module.__file__)
    assert a.report()["per_qos"][1]["publishes"] > 0


def test_pure_switch_loads_the_python_source() -> None:
    env = {**os.environ, "QOSINSPECT_PURE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "from qosinspect import _accel; "
         "import qosinspect.analysis.correlate as c; "
         "print(_accel.analysis_implementation(), c.IMPLEMENTATION, c.__file__)"],
        env=env, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT, timeout=60)
    impl, module_impl, path = out.stdout.split()
    assert (impl, module_impl) == ("python", "python") and path.endswith("correlate.py")


def test_version_says_which_analysis_runs() -> None:
    exe = str(Path(sys.executable).with_name("qosinspect"))
    for pure, want in (("1", "analysis: python"), ("0", "analysis: "
                                                   + _accel.analysis_implementation())):
        env = {**os.environ, "QOSINSPECT_PURE": pure}
        out = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True,
                             check=True, timeout=60)
        assert want in out.stdout.splitlines(), out.stdout


@pytest.mark.slow
def test_compiled_and_pure_give_the_same_tables(tmp_path: Path) -> None:
    """Every table (packets, connections, sessions, exchanges, reconnects, deliveries,
    anomalies, tcp_retransmissions) and the report of every shipped and shared capture, made by
    the compiled analysis and by the interpreted one: equal, dtypes included."""
    require_compiled()
    specs = json.dumps(_captures())
    runs = {}
    for pure in ("0", "1"):
        out = tmp_path / f"pure{pure}"
        env = {**os.environ, "QOSINSPECT_PURE": pure}
        done = subprocess.run([sys.executable, "-c", EXPORT, str(out), specs], env=env,
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[pure] = (out, done.stdout.strip())
    assert runs["0"][1] == "mypyc" and runs["1"][1] == "python"
    compared = 0
    for d in sorted(runs["0"][0].iterdir()):
        other = runs["1"][0] / d.name
        assert (d / "report.json").read_text() == (other / "report.json").read_text(), d.name
        for table in sorted(d.glob("*.parquet")):
            pd.testing.assert_frame_equal(pd.read_parquet(table),
                                          pd.read_parquet(other / table.name), obj=str(table))
            compared += 1
    assert compared >= 8 * len(json.loads(specs))


def test_the_compiled_modules_are_not_older_than_their_source() -> None:
    """An edit of an analysis module since the last build leaves the compiled module, which is
    what runs, behind (``make venv`` rebuilds: the Makefile depends on these sources)."""
    require_compiled()
    assert _accel.stale_compiled() == []

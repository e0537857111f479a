"""The HTML report in real browsers, headless, with networking off (the page must need nothing
but itself): Debian's chromium driven by chromium-driver through Selenium, and Debian's
firefox-esr through its own WebDriver BiDi server (qosinspect/testing/browsers.py).

Checks what issue 17 asks a user to rely on: no console error, the per-QoS numbers shown are
the JSON report's, the ladder of a client shows that client's packets, the exchange table sorts
by latency, a click on a row opens its ladder, a frame number copies as a display filter. A
screenshot of the page is kept in out/test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qosinspect
from qosinspect.report.html import read_payload
from qosinspect.testing.browsers import DRAW_ALL_CHARTS, DRAW_ALL_CHARTS_EXPR, Firefox, chromium
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

CAPTURES = PROJECT_ROOT / "captures"
ARTEFACTS = PROJECT_ROOT / "out" / "test-artifacts"
QOSINSPECT = str(Path(sys.executable).with_name("qosinspect"))
SEVERE = "SEVERE"

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    driver = chromium(binary, driver_path)   # selenium, a dev dependency: missing is an error
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                               {"offline": True, "latency": 0, "downloadThroughput": -1,
                                "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def _cli(*args: str) -> str:
    """``qosinspect ARGS`` in a process of its own, as a user runs it."""
    res = subprocess.run([QOSINSPECT, *args], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "gen-reconnect.html"
    _cli("report", str(CAPTURES / "gen-reconnect.pcap"), "--format", "html", "-o", str(out))
    return out


def _open(driver: Any, path: Path) -> list[dict[str, Any]]:
    """Load ``path``, wait until the page has drawn everything; the console's messages."""
    driver.get_log("browser")                       # drop what an earlier page logged
    driver.get(path.as_uri())
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.body.dataset.ready || ''") != "1":
        assert time.monotonic() < deadline, driver.find_element("id", "app").text[:500]
        time.sleep(0.05)
    logs: list[dict[str, Any]] = driver.get_log("browser")
    return logs


def _draw_all(driver: Any) -> dict[str, Any]:
    """Scroll through the page so that every chart is drawn (charts.js draws them as they come
    into view); what DRAW_ALL_CHARTS reports."""
    driver.set_script_timeout(60)
    result: dict[str, Any] = json.loads(driver.execute_async_script(DRAW_ALL_CHARTS))
    return result


def test_opens_offline_without_console_errors(browser: Any, page: Path) -> None:
    logs = _open(browser, page)
    assert [m for m in logs if m["level"] == SEVERE] == []
    drawn = _draw_all(browser)
    assert drawn["pending"] == 0 and drawn["plots"] >= 3
    assert [m for m in browser.get_log("browser") if m["level"] == SEVERE] == []
    # nothing was fetched but the page's own blob (plotly.js, inflated in the page)
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("blob:") for name in fetched), fetched
    assert browser.execute_script("return typeof Plotly") == "object"
    assert len(browser.find_elements("css selector", ".js-plotly-plot")) >= 3
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTEFACTS / "html-report.png"))


_CHARTS_IN_VIEW = """
    return Array.from(document.querySelectorAll('.chart'), (el) => {
      const r = el.getBoundingClientRect();
      return [el.id, r.bottom > 0 && r.top < innerHeight, el.classList.contains('js-plotly-plot')];
    });"""


def test_charts_are_drawn_as_they_come_into_view(browser: Any, page: Path) -> None:
    """The charts in view when the page opens are drawn before it says it is ready; the others
    only once scrolled to (that is what keeps a large capture's page quick to open)."""
    _open(browser, page)
    charts = browser.execute_script(_CHARTS_IN_VIEW)
    assert {c[0] for c in charts} >= {"latency-q1", "latency-q2", "latency-time", "timeline"}
    assert [c for c in charts if c[1] != c[2]] == []             # drawn exactly when in view
    assert any(c[1] for c in charts) and not all(c[1] for c in charts)
    timing = json.loads(browser.execute_script("return document.body.dataset.timing"))
    assert timing["charts_in_view"] == sum(1 for c in charts if c[1])
    assert timing["text"] <= timing["plotly"] <= timing["first_chart"] <= timing["charts"]
    drawn = _draw_all(browser)
    assert drawn["pending"] == 0
    assert len(drawn["times"]) == len(charts) == drawn["plots"]
    assert all(c[2] for c in browser.execute_script(_CHARTS_IN_VIEW))


def test_printing_draws_every_chart(browser: Any, page: Path) -> None:
    _open(browser, page)
    assert browser.execute_script("return Charts.pending()") > 0
    browser.execute_script("window.dispatchEvent(new Event('beforeprint'))")
    assert browser.execute_script("return Charts.pending()") == 0
    assert all(c[2] for c in browser.execute_script(_CHARTS_IN_VIEW))


#: The per-QoS table as the page shows it, {qos: {field: text}}, as JSON (an expression).
_QOS_CELLS = """JSON.stringify(Array.from(document.querySelectorAll('#qos-table td')).reduce(
    (out, td) => { (out[td.dataset.qos] ||= {})[td.dataset.field] = td.textContent; return out; },
    {}))"""


def _check_per_qos(shown: dict[str, dict[str, str]]) -> None:
    """The per-QoS numbers read from the page are the JSON report's."""
    report = json.loads(_cli("report", str(CAPTURES / "gen-reconnect.pcap"), "--format",
                             "json"))
    assert set(shown) == {"0", "1", "2"}
    for row in report["per_qos"]:
        cells = shown[str(row["qos"])]
        for field in ("publishes", "completed", "incomplete", "retransmissions", "dup_flagged",
                      "duplicates_delivered", "not_delivered"):
            assert cells[field] == str(row[field]), (row["qos"], field)
        for p, value in row["latency_ms"].items():
            assert cells[p] == ("-" if value is None else f"{value:.3f}"), (row["qos"], p)
    assert any(row["latency_ms"]["p99"] for row in report["per_qos"])


def test_per_qos_numbers_are_the_json_report(browser: Any, page: Path) -> None:
    _open(browser, page)
    _check_per_qos(json.loads(browser.execute_script(f"return {_QOS_CELLS}")))


def test_ladder_of_a_client_shows_its_packets(browser: Any, page: Path) -> None:
    from selenium.webdriver.support.ui import Select

    _open(browser, page)
    analysis = qosinspect.analyze_capture(CAPTURES / "gen-reconnect.pcap")
    conns = analysis.connections
    ids = conns.loc[conns["session"] == "sub-persistent", "conn_id"].tolist()
    assert len(ids) == 2                                    # it reconnected
    packets = analysis.packets_of(ids)
    Select(browser.find_element("id", "l-client")).select_by_value("sub-persistent")
    arrows = browser.find_elements("css selector", "#ladder-svg .arrow")
    frames = [int(a.get_attribute("data-frame")) for a in arrows]
    assert sorted(frames) == sorted(packets["frame"].tolist())
    assert {int(a.get_attribute("data-conn")) for a in arrows} == set(ids)
    resends = browser.find_elements("css selector", "#ladder-svg .arrow.resend")
    assert len(resends) == int(packets["resend"].sum()) > 0
    # both connections' opening and end are drawn
    labels = browser.find_element("id", "ladder-svg").text
    for i in ids:
        assert f"== connection {i} opened" in labels
    # a window narrows it
    t0 = int(browser.execute_script("return qosinspectData.t0_ns"))
    since = (packets["ts"].iloc[10].value - t0) / 1e9
    browser.find_element("id", "l-since").send_keys(f"{since:.9f}")
    browser.find_element("id", "l-draw").click()
    n = len(browser.find_elements("css selector", "#ladder-svg .arrow"))
    assert n == int(((packets["ts"].astype("int64") - t0) / 1e9 >= since).sum()) < len(frames)


def test_exchange_table_sorts_by_latency_and_opens_a_ladder(browser: Any, page: Path) -> None:
    _open(browser, page)
    header = browser.find_element("css selector", '#ex-head th[data-col="latency_ms"]')
    header.click()
    order = browser.execute_script(
        "const l = qosinspectData.exchanges.cols.latency_ms;"
        "return Array.from(Exchanges.view, (i) => l[i]);")
    values = [v for v in order if v is not None]
    assert values == sorted(values) and len(values) > 100
    assert order[len(values):] == [None] * (len(order) - len(values))    # missing: last
    header.click()                                                         # descending
    shown = [c.text for c in browser.find_elements("css selector", "#ex-body td.c-latency_ms")]
    assert float(shown[0]) == pytest.approx(max(values), abs=1e-3)
    assert [float(v) for v in shown[:5]] == sorted((float(v) for v in shown[:5]), reverse=True)
    # the slowest exchange's ladder: its arrows highlighted
    browser.find_element("css selector", "#ex-body tr").click()
    assert browser.find_elements("css selector", "#ladder-svg .arrow.hl")
    # filters: QoS 2 only
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "f-qos")).select_by_value("2")
    qos = [c.text for c in browser.find_elements("css selector", "#ex-body td.c-qos")]
    assert qos and set(qos) == {"2"}


def test_frame_number_copies_as_display_filter(browser: Any, page: Path) -> None:
    _open(browser, page)
    frame = browser.find_element("css selector", "#ex-body .frame")
    n = frame.text
    frame.click()
    toast = browser.find_element("id", "toast")
    assert toast.get_attribute("textContent") == f"copied: frame.number == {n}"


@pytest.mark.parametrize("name", ["refusals.pcap", "mosquitto-tls.pcap",
                                  "gen-stalled-acks.pcap", "mosquitto-v5-props.pcap"])
def test_other_captures_open_cleanly(browser: Any, tmp_path: Path, name: str) -> None:
    out = tmp_path / "r.html"
    _cli("report", str(CAPTURES / name), "--format", "html", "-o", str(out))
    logs = _open(browser, out)
    assert [m for m in logs if m["level"] == SEVERE] == []
    assert "Per QoS level" in browser.find_element("id", "sec-qos").text
    # credentials sent in clear text stand out (as a warning), and only then
    clear = read_payload(out.read_text(encoding="utf-8"))["report"]["clear_text"]
    warned = browser.find_elements("css selector", "#sec-cleartext p.warn")
    assert bool(warned) == bool(clear["with_username"] or clear["with_password"])


# -- Firefox: through its own WebDriver BiDi server (no geckodriver) ------------------------------

@pytest.fixture(scope="module")
def firefox() -> Iterator[Firefox]:
    with Firefox(require_tool("firefox-esr")) as ff:
        yield ff


def test_firefox_shows_the_report(firefox: Firefox, page: Path) -> None:
    """The same page in Firefox: no console or JavaScript error, nothing fetched, every chart
    drawn (scrolled through), the per-QoS numbers of the JSON report, a client's ladder with
    its packets, the exchange table sorted by latency; a screenshot kept."""
    firefox.open(page.as_uri())
    firefox.wait_for("document.body.dataset.ready === '1'")
    drawn = json.loads(firefox.evaluate(DRAW_ALL_CHARTS_EXPR))
    assert drawn["pending"] == 0 and drawn["plots"] == len(drawn["times"]) >= 3
    assert firefox.evaluate("typeof Plotly") == "object"
    fetched = json.loads(firefox.evaluate(
        "JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))"))
    assert all(name.startswith("blob:") for name in fetched), fetched
    _check_per_qos(json.loads(firefox.evaluate(_QOS_CELLS)))
    firefox.evaluate("""(() => { const s = document.getElementById('l-client');
        s.value = 'sub-persistent'; s.dispatchEvent(new Event('change')); })()""")
    frames = json.loads(firefox.evaluate("JSON.stringify(Array.from(document.querySelectorAll("
                                         "'#ladder-svg .arrow'), (a) => +a.dataset.frame))"))
    analysis = qosinspect.analyze_capture(CAPTURES / "gen-reconnect.pcap")
    ids = analysis.connections.loc[analysis.connections["session"] == "sub-persistent",
                                   "conn_id"].tolist()
    assert sorted(frames) == sorted(analysis.packets_of(ids)["frame"].tolist())
    firefox.evaluate("document.querySelector('#ex-head th[data-col=\"latency_ms\"]').click()")
    order = json.loads(firefox.evaluate("JSON.stringify(Array.from(Exchanges.view, "
                                        "(i) => qosinspectData.exchanges.cols.latency_ms[i]))"))
    values = [v for v in order if v is not None]
    assert values == sorted(values) and len(values) > 100
    assert firefox.errors() == []
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    firefox.screenshot(ARTEFACTS / "html-report-firefox.png")


def test_diagnoses_are_the_json_reports(browser: Any, tmp_path: Path) -> None:
    """The Diagnoses section (issue 16) as the text report has it: one row per cause with the
    JSON report's counts, each example's frames copyable, and the time on the wire in the
    per-step table."""
    capture = CAPTURES / "field" / "tcp-loss-client-side.pcap"
    out = tmp_path / "d.html"
    _cli("report", str(capture), "--format", "html", "-o", str(out))
    report = json.loads(_cli("report", str(capture), "--format", "json"))
    assert report["diagnoses"] and report["time_on_wire_ms"]
    logs = _open(browser, out)
    assert [m for m in logs if m["level"] == SEVERE] == []
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#diagnoses-table tbody tr')]"
        ".map((tr) => [...tr.cells].map((td) => td.textContent))")
    assert rows == [[d["cause"], str(d["exchanges"]), str(d["reconnects"]),
                     str(d["deliveries"]), f"{d['latency_explained_ms']:.3f}" if isinstance(
                         d["latency_explained_ms"], float) else str(d["latency_explained_ms"])]
                    for d in report["diagnoses"]]
    frames = {int(f.get_attribute("data-frame")) for f in browser.find_elements(
        "css selector", "#sec-diagnoses .diagnosis .frame")}
    assert frames == {f for d in report["diagnoses"] for ex in d["examples"] for f in ex["frames"]}
    steps = browser.find_element("id", "step-table").text
    assert "time on the wire" in steps
    # every diagnosed exchange is drawn on the latency-over-time chart, a ring per cause
    assert _draw_all(browser)["pending"] == 0
    traces = browser.execute_script(
        "return document.getElementById('latency-time').data"
        ".filter((t) => t.name.startsWith('cause: ')).map((t) => [t.name, t.x.length])")
    drawn = {name.removeprefix("cause: "): n for name, n in traces}
    assert drawn == {d["cause"]: d["exchanges"] for d in report["diagnoses"] if d["exchanges"]}

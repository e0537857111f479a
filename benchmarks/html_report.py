"""HTML report benchmark: ``qosinspect report --format html`` on the large capture.

The capture is the decoder benchmark's (``out/bench/mqtt_large.pcap``, over a million frames
between real peers; see benchmarks/_capture.py), or ``--capture FILE [--port N]``.

Measured, each as its own process (wall time, CPU seconds, peak RSS), in the same run:

* ``html``: ``qosinspect report --format html -o FILE`` (the analysis in detail mode, the audit,
  the page);
* ``html_no_audit``: the same with ``--no-audit`` (the audit reads the capture a second time);
* ``json``: ``qosinspect report --format json``, the text report's analysis: the ratios say what
  the page costs on top of it.

Then what the page holds (issue 17: at most 5 MB; every exchange that did not complete and every
outlier kept, an even sample of the rest): its size, the rows of each table against the
capture's, why the exchange rows are there, and whether the numbers are the JSON report's. With
chromium and chromium-driver installed, the page is opened headless (networking off, no GPU,
1280x1600) ``--runs`` times (3), medians of: the time to the report's text, to plotly.js having
run, to the first chart drawn, to every chart in view drawn (the page draws the others as they
come into view), and, scrolling through the page a screen at a time, to every chart drawn; the
main thread's busy time (Chromium's TaskDuration and ScriptDuration: CPU the page costs, which
moves less with the machine's load than the times); in the page, the time to sort the exchange
table by latency and to filter it. ``--page FILE`` measures only the browser figures of a page
written before (by another version, to compare in the same run).

    python benchmarks/html_report.py [--capture F --port N] [--json] [--pure] [--no-browser]
                              [--runs N] [--window WxH] [--page FILE]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _capture import (
    CPU,
    analysis_implementation,
    argument_parser,
    ensure_capture,
    implementation,
    log,
    qosinspect_command,
    run_measured,
)

# This file is html.py, and its folder is first on sys.path: take it off before anything
# imports the standard library's html (qosinspect's page, selenium, pandas do).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from qosinspect.report.html import KEPT, read_payload  # noqa: E402
from qosinspect.testing import browsers  # noqa: E402

MAX_BYTES = 5 * 2**20
MAX_OPEN_S = 2.0


def browser_figures(page: Path, runs: int = 3, window: tuple[int, int] = (1280, 1600)
                    ) -> dict[str, Any] | None:
    """Open ``page`` in headless chromium ``runs`` times (1280x1600, no GPU: WebGL in
    software) and take medians: the time (s since navigation start) to the report's text, to
    plotly.js having run, to the first chart drawn and to every chart in view drawn (charts.js
    draws the others as they come into view); then, scrolling through the page a screen at a
    time, to every chart drawn. Also the main thread's busy time (Chromium's ScriptDuration
    and TaskDuration, which move less with the machine's load than wall time), and the page's
    own sort and filter times (ms)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        log("chromium or chromedriver missing: no browser figures")
        return None
    driver = browsers.chromium(chromium, driver_path, width=window[0], height=window[1],
                               console=False)
    driver.set_script_timeout(120)
    runs_: dict[str, list[float]] = {k: [] for k in (
        "text", "plotly", "first_chart", "charts", "all_charts", "script", "task")}
    try:
        driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "threadTicks"})
        for _ in range(runs):
            driver.get("about:blank")
            before = _metrics(driver)
            driver.get(page.as_uri())
            deadline = time.monotonic() + 120
            while driver.execute_script("return document.body.dataset.ready || ''") != "1":
                if time.monotonic() > deadline:
                    sys.exit("the page did not finish drawing in 120 s")
                time.sleep(0.02)
            timing = json.loads(driver.execute_script("return document.body.dataset.timing"))
            after = _metrics(driver)
            if driver.execute_script("return typeof Charts") == "undefined":
                # a page of an earlier version, which drew every chart before it was ready
                drawn = {"times": [["", timing["charts"]]]}
                timing["first_chart"] = timing["charts"]
                timing["charts_in_view"] = len(driver.find_elements("css selector", ".chart"))
            else:
                drawn = json.loads(driver.execute_async_script(browsers.DRAW_ALL_CHARTS))
            if drawn.get("pending"):
                sys.exit(f"{drawn['pending']} charts not drawn after scrolling through")
            for key in ("text", "plotly", "first_chart", "charts"):
                runs_[key].append(timing[key] / 1e3)
            runs_["all_charts"].append(max(t for _, t in drawn["times"]) / 1e3)
            runs_["script"].append(after["ScriptDuration"] - before["ScriptDuration"])
            runs_["task"].append(after["TaskDuration"] - before["TaskDuration"])
        charts_in_view, charts = timing["charts_in_view"], len(drawn["times"])
        inpage = driver.execute_script("""
            const t0 = performance.now(); Exchanges.sort('latency_ms');
            const t1 = performance.now(); Exchanges.sort('latency_ms');
            const t2 = performance.now();
            const q = document.getElementById('f-qos'); q.value = '2'; Exchanges.filter();
            const t3 = performance.now();
            return {sort_ms: t1 - t0, sort_again_ms: t2 - t1, filter_sort_ms: t3 - t2,
                    rows: qosinspectData.exchanges.n, shown_after_filter: Exchanges.view.length,
                    dom_rows: document.querySelectorAll('#ex-body tr').length};""")
    finally:
        driver.quit()
    names = {"text": "open_text_s", "plotly": "open_plotly_s", "first_chart": "open_first_chart_s",
             "charts": "open_charts_in_view_s", "all_charts": "all_charts_after_scroll_s",
             "script": "main_thread_script_s", "task": "main_thread_busy_s"}
    out: dict[str, Any] = {}
    for key, name in names.items():
        out[name] = round(statistics.median(runs_[key]), 3)
        out[f"{name}_runs"] = [round(x, 3) for x in runs_[key]]
    return {**out, "charts_in_view": charts_in_view, "charts": charts,
            "meets_open": out["open_charts_in_view_s"] < MAX_OPEN_S,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in inpage.items()}}


def firefox_figures(page: Path, runs: int = 3, window: tuple[int, int] = (1280, 1600)
                    ) -> dict[str, Any] | None:
    """The same openings in headless Firefox (its WebDriver BiDi server): medians of the times
    to the text, plotly.js, the first chart, the charts in view and every chart after
    scrolling through."""
    binary = shutil.which("firefox-esr")
    if binary is None:
        log("firefox-esr missing: no Firefox figures")
        return None
    times: dict[str, list[float]] = {k: [] for k in (
        "text", "plotly", "first_chart", "charts", "all_charts")}
    with browsers.Firefox(binary, width=window[0], height=window[1], timeout=120) as ff:
        for _ in range(runs):
            ff.open("about:blank")
            ff.open(page.as_uri())
            ff.wait_for("document.body.dataset.ready === '1'", 120)
            timing = json.loads(ff.evaluate("document.body.dataset.timing"))
            if ff.evaluate("typeof Charts") == "undefined":     # an earlier version's page
                drawn = {"times": [["", timing["charts"]]]}
            else:
                drawn = json.loads(ff.evaluate(browsers.DRAW_ALL_CHARTS_EXPR))
            for key in ("text", "plotly", "first_chart", "charts"):
                times[key].append(timing.get(key, timing["charts"]) / 1e3)
            times["all_charts"].append(max(t for _, t in drawn["times"]) / 1e3)
        errors = len(ff.errors())
    return {**{f"{k}_s": round(statistics.median(v), 3) for k, v in times.items()},
            "charts_in_view_s_runs": [round(x, 3) for x in times["charts"]], "errors": errors}


def _metrics(driver: Any) -> dict[str, float]:
    """Chromium's performance metrics of the page (CDP Performance.getMetrics)."""
    res = driver.execute_cdp_cmd("Performance.getMetrics", {})
    return {m["name"]: float(m["value"]) for m in res["metrics"]}


def main() -> None:
    ap = argument_parser(__doc__)
    ap.add_argument("--no-browser", action="store_true", help="skip the browser figures")
    ap.add_argument("--page", help="only the browser figures of this page (an HTML report "
                    "written before, e.g. by another version to compare with)")
    ap.add_argument("--runs", type=int, default=3, help="browser openings (default 3)")
    ap.add_argument("--window", default="1280x1600", help="browser window, WxH (1280x1600)")
    args = ap.parse_args()
    try:
        width, height = (int(v) for v in args.window.split("x"))
    except ValueError:
        sys.exit("--window: WIDTHxHEIGHT")
    window = (width, height)
    if args.page:
        only = {"page": args.page, "window": args.window,
                "browser": browser_figures(Path(args.page), args.runs, window),
                "firefox": firefox_figures(Path(args.page), args.runs, window),
                "load_average_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(only) if args.json else json.dumps(only, indent=1))
        return
    path, port = ensure_capture(args)
    impl = implementation(args)
    qosinspect = qosinspect_command()
    base = [qosinspect, "report", "--port", str(port), str(path)]
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        log("qosinspect report --format json ...")
        report_out = Path(tmp) / "report.json"
        with report_out.open("w") as out:
            j_s, j_rss, rc = run_measured([*base, "--format", "json"], stdout=out, key="json")
        if rc:
            sys.exit(f"report --format json failed with status {rc}")
        log("qosinspect report --format html --no-audit ...")
        n_s, n_rss, rc = run_measured([*base, "--format", "html", "--no-audit", "-o",
                                       str(page)], key="html_no_audit")
        if rc:
            sys.exit(f"report --format html --no-audit failed with status {rc}")
        log("qosinspect report --format html ...")
        h_s, h_rss, rc = run_measured([*base, "--format", "html", "-o", str(page)], key="html")
        if rc:
            sys.exit(f"report --format html failed with status {rc}")
        size = page.stat().st_size
        data = read_payload(page.read_text(encoding="utf-8"))
        report = json.loads(report_out.read_text())
        ex = data["exchanges"]
        kept = Counter(KEPT[k] for k in ex["cols"]["kept"])
        unfinished = sum(r["publishes"] - r["completed"] for r in report["per_qos"])
        browser = None if args.no_browser else browser_figures(page, args.runs, window)
        firefox = None if args.no_browser else firefox_figures(page, args.runs, window)
    figures: dict[str, Any] = {
        "capture": str(path), "mqtt_packets": report["capture"].get("mqtt_packets"),
        "html_bytes": size, "max_bytes": MAX_BYTES, "meets_size": size <= MAX_BYTES,
        "html_s": round(h_s, 3), "html_cpu_s": round(CPU["html"], 3),
        "html_rss_mb": round(h_rss, 1),
        "html_no_audit_s": round(n_s, 3), "html_no_audit_cpu_s": round(CPU["html_no_audit"], 3),
        "html_no_audit_rss_mb": round(n_rss, 1),
        "json_s": round(j_s, 3), "json_cpu_s": round(CPU["json"], 3),
        "json_rss_mb": round(j_rss, 1),
        "html_vs_json_cpu": round(CPU["html"] / CPU["json"], 2),
        "html_no_audit_vs_json_cpu": round(CPU["html_no_audit"] / CPU["json"], 2),
        "same_numbers_as_json": data["report"] == report,
        "exchanges_total": ex["total"], "exchange_rows": ex["n"], "exchange_rows_why": kept,
        "not_completed_in_report": unfinished,
        "packets_total": data["packets"]["total"], "packet_rows": data["packets"]["n"],
        "connection_rows": data["connections"]["n"], "connections_total":
            data["connections"]["total"],
        "window": args.window, "browser": browser, "firefox": firefox,
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "implementation": impl, "analysis": analysis_implementation(args),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()

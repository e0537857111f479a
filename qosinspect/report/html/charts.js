/* qosinspect HTML report: when the charts are drawn (loaded with report.js, which uses it).
 *
 * Why: on a large capture plotly.js and its charts are most of the time a page takes to open
 * (profiled in headless Chromium: the dense latency-over-time series alone builds a WebGL
 * context, about 0.3-0.5 s in software rendering). The report's text and tables are shown at
 * once; each chart is a placeholder of its final height (the page does not jump when it is
 * drawn) with the function that draws it, and is drawn when it comes into view, once plotly.js
 * has run. Charts are drawn one per task, so the browser can show the first before the next is
 * drawn. Printing draws every chart first.
 *
 * For the benchmark and the tests: Charts.times (ms since navigation start, when each chart
 * was drawn), Charts.painted (when the last ones drawn were painted), Charts.pending() (charts
 * not drawn yet) and Charts.idle() (resolves when the charts in view are drawn and painted).
 */
"use strict";

const Charts = {
  todo: new Map(),        // placeholder element -> its draw function, until drawn
  queue: [],              // placeholders in view, to draw in this order
  times: [],              // [chart id, ms since navigation start when drawn]
  painted: null,          // ms since navigation start when the last charts drawn were painted
  running: null,          // the promise of the drawing loop while it runs
  observer: null,

  /* A chart placeholder of `height` px whose `draw(el)` draws it (with Plotly.newPlot). */
  add(id, height, draw) {
    const el = h("div", {class: "chart", id, style: `height:${height}px`});
    this.todo.set(el, draw);
    return el;
  },

  /* Once plotly.js has run: watch the placeholders; resolves when the charts in view are
   * drawn. */
  start() {
    window.addEventListener("beforeprint", () => this.drawAll());
    return new Promise((resolve) => {
      let first = true;
      this.observer = new IntersectionObserver((entries) => {
        for (const e of entries) {
          if (e.isIntersecting && this.todo.has(e.target) && !this.queue.includes(e.target)) {
            this.queue.push(e.target);
          }
        }
        const run = this.run();
        if (first) { first = false; run.then(resolve); }
      });
      for (const el of this.todo.keys()) this.observer.observe(el);
      if (!this.todo.size) { first = false; resolve(); }
    });
  },

  /* Draw the queued charts one per task (the browser may paint and handle input between
   * them; waiting for a paint after each would cost a frame of this large page each); resolves
   * once they are painted. */
  run() {
    if (!this.running) {
      this.running = (async () => {
        while (this.queue.length) {
          const el = this.queue.shift();
          this.drawOne(el);
          this.times.push([el.id, performance.now()]);
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
        await nextPaint();
        this.painted = performance.now();
        this.running = null;
      })();
    }
    return this.running;
  },

  /* Draw one chart; one that fails says so in its place (and on the console), the others
   * are still drawn. */
  drawOne(el) {
    const draw = this.todo.get(el);
    if (!draw) return;
    this.todo.delete(el);
    if (this.observer) this.observer.unobserve(el);
    try {
      draw(el);
    } catch (err) {
      el.replaceChildren(h("p", {class: "warn"}, `This chart could not be drawn: ${err}`));
      console.error(err);
    }
  },

  drawAll() {
    for (const el of [...this.todo.keys()]) this.drawOne(el);
  },

  pending() { return this.todo.size; },

  idle() { return this.running || Promise.resolve(); },
};

/* Resolves after the browser has painted what the current task changed. */
function nextPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

/* Whether this browser draws WebGL (plotly's scattergl); otherwise dense series are SVG. */
function hasWebGL() {
  if (hasWebGL.known === undefined) {
    const c = document.createElement("canvas");
    let gl = null;
    try { gl = c.getContext("webgl") || c.getContext("experimental-webgl"); } catch (e) { gl = null; }
    hasWebGL.known = !!gl;
    if (gl) { const lose = gl.getExtension("WEBGL_lose_context"); if (lose) lose.loseContext(); }
  }
  return hasWebGL.known;
}

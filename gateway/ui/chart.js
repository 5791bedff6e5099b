// chart.js: a small SVG line chart of the last 60 one-second samples.
// Colours come from CSS classes (no inline styles: the page's CSP forbids them).
import { h, svgEl } from "./dom.js";

const W = 300, H = 80, POINTS = 60;

// LineChart keeps up to 60 samples and redraws on every push.
// fmt renders a value for the caption; max is the fixed top of the scale
// (0: scale to the largest sample).
export class LineChart {
  constructor(name, { fmt = String, max = 0, cls = "" } = {}) {
    this.name = name;
    this.fmt = fmt;
    this.max = max;
    this.samples = [];
    this.value = h("span", { class: "chart-value", text: "–" });
    this.svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `${name}, last 60 seconds`, class: "chart-svg" });
    this.grid = svgEl("path", { class: "chart-grid", d: gridPath() });
    this.area = svgEl("path", { class: "chart-area" });
    this.line = svgEl("path", { class: "chart-line", fill: "none" });
    this.svg.append(this.grid, this.area, this.line);
    this.el = h("figure", { class: "chart " + cls },
      h("figcaption", null, h("span", { class: "chart-name", text: name }), " ", this.value),
      this.svg);
  }

  // push adds one sample (a finite number; anything else is a gap drawn as 0).
  push(v) {
    const x = typeof v === "number" && isFinite(v) ? v : 0;
    this.samples.push(x);
    if (this.samples.length > POINTS) this.samples.shift();
    this.value.textContent = this.fmt(x);
    this.draw();
  }

  draw() {
    const n = this.samples.length;
    if (n === 0) return;
    const top = this.max > 0 ? this.max : Math.max(...this.samples, 1e-9) * 1.1;
    const step = W / (POINTS - 1);
    const x0 = W - (n - 1) * step;
    let d = "";
    this.samples.forEach((v, i) => {
      const x = x0 + i * step;
      const y = H - Math.min(1, Math.max(0, v / top)) * (H - 2) - 1;
      d += (i === 0 ? "M" : "L") + x.toFixed(1) + " " + y.toFixed(1) + " ";
    });
    this.line.setAttribute("d", d);
    this.area.setAttribute("d", d + `L${W} ${H} L${x0.toFixed(1)} ${H} Z`);
    this.el.dataset.samples = String(n);
  }
}

function gridPath() {
  let d = "";
  for (const f of [0.25, 0.5, 0.75]) d += `M0 ${H * f} L${W} ${H * f} `;
  return d;
}

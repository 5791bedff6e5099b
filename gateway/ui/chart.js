// chart.js: a small SVG line chart of the last 60 one-second samples, one
// or more series. Colours come from CSS classes (no inline styles: the
// page's CSP forbids them).
import { h, svgEl } from "./dom.js";

const W = 300, H = 80, POINTS = 60;

// LineChart keeps up to 60 samples per series and redraws on every push.
// fmt renders a value for the caption; max is the fixed top of the scale
// (0: scale to the largest sample); series names the lines (one by default).
export class LineChart {
  constructor(name, { fmt = String, max = 0, series = [""] } = {}) {
    this.name = name;
    this.fmt = fmt;
    this.max = max;
    this.series = series.map((label, i) => ({
      label, samples: [],
      line: svgEl("path", { class: `chart-line series-${i}`, fill: "none" }),
      area: svgEl("path", { class: `chart-area series-${i}` }),
      value: h("span", { class: `chart-value series-${i}`, text: "–" }),
    }));
    this.svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `${name}, last 60 seconds`, class: "chart-svg" });
    this.svg.append(svgEl("path", { class: "chart-grid", d: gridPath() }));
    for (const s of this.series) this.svg.append(s.area);
    for (const s of this.series) this.svg.append(s.line);
    const values = this.series.map((s) => [s.label ? s.label + " " : "", s.value, " "]);
    this.el = h("figure", { class: "chart", "data-chart": name },
      h("figcaption", null, h("span", { class: "chart-name", text: name }), h("span", null, values)),
      this.svg);
  }

  // push adds one sample per series (a non-number is a gap drawn as 0).
  push(...vs) {
    this.series.forEach((s, i) => {
      const v = vs[i];
      const x = typeof v === "number" && isFinite(v) ? v : 0;
      s.samples.push(x);
      if (s.samples.length > POINTS) s.samples.shift();
      s.value.textContent = typeof v === "number" && isFinite(v) ? this.fmt(x) : "–";
    });
    this.draw();
  }

  draw() {
    let top = this.max;
    if (!(top > 0)) {
      top = 1e-9;
      for (const s of this.series) for (const v of s.samples) top = Math.max(top, v);
      top *= 1.1;
    }
    const step = W / (POINTS - 1);
    for (const s of this.series) {
      const n = s.samples.length;
      if (n === 0) continue;
      const x0 = W - (n - 1) * step;
      let d = "";
      s.samples.forEach((v, i) => {
        const x = x0 + i * step;
        const y = H - Math.min(1, Math.max(0, v / top)) * (H - 2) - 1;
        d += (i === 0 ? "M" : "L") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      });
      s.line.setAttribute("d", d);
      s.area.setAttribute("d", d + `L${W} ${H} L${x0.toFixed(1)} ${H} Z`);
    }
    this.el.setAttribute("data-samples", String(this.series[0].samples.length));
  }
}

function gridPath() {
  let d = "";
  for (const f of [0.25, 0.5, 0.75]) d += `M0 ${H * f} L${W} ${H * f} `;
  return d;
}

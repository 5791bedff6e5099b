// dom.js: the only way the dashboard builds markup. Strings always become
// text nodes (textContent), never HTML, so nothing from the network can
// inject elements or scripts.

// h builds an element: h("td", {class: "num"}, "0.42", otherNode).
// attrs: "class", "text", on<event> handlers, boolean true/false attributes,
// everything else through setAttribute.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") el.textContent = String(v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

// append adds children the way h does: strings as text, arrays flattened,
// null/undefined/false skipped (the native Element.append would print
// "null" and stringify arrays).
export function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// svgEl builds an SVG element (charts); attributes only, no text from data.
export function svgEl(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// clear empties an element.
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// fill replaces an element's children (see append).
export function fill(el, ...children) {
  append(clear(el), children);
  return el;
}

// shortKey renders a 56-character nkey as "UCURBG…MPGD2" (the full key goes
// in a title attribute).
export function shortKey(k) {
  const s = String(k ?? "");
  return /^[A-Z0-9]{56}$/.test(s) ? s.slice(0, 6) + "…" + s.slice(-5) : s;
}

// fmtPct renders a 0..1 fraction as a percentage ("–" when unknown).
export function fmtPct(v) {
  return typeof v === "number" && isFinite(v) ? (v * 100).toFixed(0) + "%" : "–";
}

// fmtNum renders a number with at most two decimals ("–" when unknown).
export function fmtNum(v, digits = 2) {
  return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–";
}

// fmtWhen renders a timestamp relative to now: "12 s ago" or "in 10 min".
export function fmtWhen(ts) {
  const t = Date.parse(ts);
  if (!isFinite(t) || t <= 0) return "–";
  if (t <= Date.now()) return fmtAgo(ts);
  const s = Math.round((t - Date.now()) / 1000);
  if (s < 90) return "in " + s + " s";
  if (s < 5400) return "in " + Math.round(s / 60) + " min";
  return "in " + Math.round(s / 3600) + " h";
}

// fmtAgo renders a timestamp as "12 s ago".
export function fmtAgo(ts) {
  const t = Date.parse(ts);
  if (!isFinite(t) || t <= 0) return "–";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// app.js: the robonet dashboard. Plain ES modules, no framework, no build
// step, nothing from the internet; served embedded in the binary under a
// CSP of default-src 'self'. State comes from the REST API once and then
// live from one WebSocket (gateway/API.md); every string from the network is
// set as text, never parsed as HTML.
import { h, fill } from "./dom.js";
import { getJSON } from "./api.js";
import { Live } from "./live.js";
import { NodesView, compareChevrons } from "./nodes.js";
import { NodeView } from "./node.js";
import { RunView, AskView } from "./run.js";
import { AlertsView, ApprovalsView, alertsTable } from "./alerts.js";
import { renderMediaTiles } from "./mediatiles.js";

const ALERT_TTL = 5 * 60 * 1000; // an alert not repeated for this long is over
const MAX_ALERTS = 2000; // kept in memory; more distinct ones drop the oldest
const APPROVALS_EVERY = 15000;
const STATUS_EVERY = 30000;
const MEDIA_EVERY = 15000;

class App {
  constructor() {
    this.state = { me: null, status: null, nodes: [], alerts: new Map(), approvals: [], alertsError: "", approvalsError: "", media: [] };
    this.mediaEl = null;
    this.view = null;
    this.pending = false;
    this.over = false;
    this.viewEl = document.getElementById("view");
    this.conn = document.getElementById("conn");
    this.live = new Live({ onState: (s) => this.connState(s) });
    this.live.on("hello", () => {});
    this.live.on("nodes", (m) => this.setNodes(m.nodes));
    this.live.on("alert", (m) => this.addAlerts([m.alert]));
    this.live.on("gauges", (m) => { if (this.view && this.view.gauges) this.view.gauges(m); });
    this.live.on("error", (m) => console.warn("live:", m.code, m.error));
    this.commandsP = null;
  }

  async start() {
    this.themeToggle();
    try {
      this.state.me = await getJSON("/api/me");
    } catch (e) {
      this.signedOut(e);
      return;
    }
    const me = this.state.me;
    document.getElementById("who").textContent = `${me.role} ${short(me.user)} @ ${me.chevron}`;
    document.getElementById("logout").classList.remove("hidden");
    this.live.start();
    window.addEventListener("hashchange", () => this.route());
    this.route();
    await Promise.allSettled([this.refreshNodes(), this.refreshStatus(), this.refreshAlerts(), this.refreshApprovals(), this.refreshMedia()]);
    setInterval(() => { if (!this.over) this.refreshApprovals(); }, APPROVALS_EVERY);
    setInterval(() => { if (!this.over) this.refreshMedia(); }, MEDIA_EVERY);
    setInterval(() => { if (!this.over) this.refreshStatus(); }, STATUS_EVERY);
  }

  signedOut(e) {
    this.over = true;
    if (this.view) { this.view.unmount(); this.view = null; }
    document.getElementById("logout").classList.add("hidden");
    this.conn.textContent = "signed out";
    this.conn.className = "conn down";
    const msg = e && e.status === 401 ? "You are not signed in." : `The gateway answered: ${e}`;
    fill(this.viewEl, h("h1", { text: "Sign in" }),
      h("p", { class: e && e.status === 401 ? "notice" : "error", role: "alert", id: "signed-out", text: msg }),
      h("p", null, "Run ", h("code", { text: "robonet gateway login" }), " on a node and open the link it prints."));
  }

  connState(s) {
    const text = { connecting: "connecting…", live: "live", down: "reconnecting…", unauthenticated: "signed out" }[s] || s;
    this.conn.textContent = text;
    this.conn.className = "conn " + (s === "live" ? "live" : s === "connecting" ? "" : "down");
    if (s === "unauthenticated") this.signedOut({ status: 401 });
    if (s === "down") this.checkSession();
  }

  // checkSession runs when the socket dropped: a handshake refused because
  // the session ended looks like any other drop, so ask /api/me.
  async checkSession() {
    try {
      await getJSON("/api/me");
    } catch (e) {
      if (e.status === 401) {
        this.live.stop();
        this.signedOut(e);
      }
    }
  }

  themeToggle() {
    const btn = document.getElementById("theme");
    const current = () => document.documentElement.getAttribute("data-theme") ||
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    const label = () => { btn.textContent = current() === "dark" ? "☀ light" : "☾ dark"; };
    btn.addEventListener("click", () => {
      const next = current() === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("rn-theme", next); } catch (e) { /* not persisted */ }
      label();
    });
    label();
  }

  route() {
    if (this.over) return; // signed out: the page says how to log in
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?", 2);
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean);
    let view, arg = params, name = parts[0] || "nodes";
    switch (name) {
      case "nodes": view = new NodesView(this); break;
      case "node":
        arg = safeDecode(parts[1] || "");
        view = /^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$/.test(arg) ? new NodeView(this) : null;
        break;
      case "run": view = new RunView(this); break;
      case "ask": view = new AskView(this); break;
      case "alerts": view = new AlertsView(this); break;
      case "approvals": view = new ApprovalsView(this); break;
      default: view = null;
    }
    if (this.view) this.view.unmount();
    this.view = view;
    for (const a of document.querySelectorAll("header nav a")) {
      if (a.dataset.route === name || (name === "node" && a.dataset.route === "nodes")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (!view) {
      const what = name === "node" ? `no node "${arg}": a chevron is 1 to 4 numbers, as in 3.12.7.1` : `no page ${path}`;
      fill(this.viewEl, h("p", { class: "error", id: "no-page", text: what }), h("a", { href: "#/", text: "Back to the nodes" }));
      return;
    }
    const titles = { nodes: "Nodes", node: `Node ${arg}`, run: "Run", ask: "Ask", alerts: "Alerts", approvals: "Approvals" };
    document.title = `${titles[name]} · robonet`;
    view.mount(this.viewEl, arg);
  }

  // refresh re-renders the current view at most once per animation frame,
  // however many socket messages arrive in between.
  refresh() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      if (this.view && this.view.update) this.view.update();
      badge("alert-count", this.activeAlerts().length);
      badge("approval-count", this.state.approvals.length);
    });
  }

  setNodes(nodes) {
    if (!Array.isArray(nodes)) return;
    this.state.nodes = nodes.filter((n) => n && typeof n.chevron === "string").sort((a, b) => compareChevrons(a.chevron, b.chevron));
    this.refresh();
  }

  async refreshNodes() {
    try { this.setNodes(await getJSON("/api/nodes")); } catch (e) { console.warn("nodes:", String(e)); }
  }

  async refreshStatus() {
    try { this.state.status = await getJSON("/api/status"); this.refresh(); } catch (e) { console.warn("status:", String(e)); }
  }

  async refreshAlerts() {
    try {
      const r = await getJSON("/api/alerts");
      this.state.alertsError = "";
      this.addAlerts(r && Array.isArray(r.alerts) ? r.alerts : []);
    } catch (e) {
      this.state.alertsError = `alerts: ${e}`;
      this.refresh();
    }
  }

  async refreshApprovals() {
    try {
      const r = await getJSON("/api/approvals");
      this.state.approvals = Array.isArray(r) ? r : [];
      this.state.approvalsError = "";
    } catch (e) {
      this.state.approvalsError = `approvals: ${e}`;
    }
    this.refresh();
  }

  addAlerts(list) {
    for (const a of list) {
      if (!a || typeof a !== "object") continue;
      const k = `${a.by}|${a.peer}|${a.signal}`;
      this.state.alerts.delete(k); // re-inserted last: the Map's order is arrival order
      this.state.alerts.set(k, a);
    }
    // Bounded: the oldest arrivals go first.
    for (const k of this.state.alerts.keys()) {
      if (this.state.alerts.size <= MAX_ALERTS) break;
      this.state.alerts.delete(k);
    }
    this.refresh();
  }

  // activeAlerts are the alerts seen in the last five minutes, newest first.
  activeAlerts() {
    const now = Date.now();
    const out = [];
    for (const [k, a] of this.state.alerts) {
      const t = Date.parse(a.time);
      if (isFinite(t) && now - t > ALERT_TTL) { this.state.alerts.delete(k); continue; }
      out.push(a);
    }
    return out.sort((a, b) => String(b.time).localeCompare(String(a.time)));
  }

  alertsAbout(chevron) {
    return this.activeAlerts().filter((a) => a.chevron === chevron || a.peer === chevron);
  }

  alertsTable(alerts) { return alertsTable(alerts); }

  commands() {
    if (!this.commandsP) {
      this.commandsP = getJSON("/api/commands").then((l) => (Array.isArray(l) ? l : []));
      this.commandsP.catch(() => { this.commandsP = null; });
    }
    return this.commandsP;
  }

  // mediaSection is the streams' tiles (mediatiles.js), hidden while no
  // node offers any (or the gateway has no media: /api/media fails).
  mediaSection() {
    this.mediaEl = h("section", { id: "media", class: "hidden", "aria-label": "Media" }, h("h2", { text: "Media" }),
      h("div", { class: "media-tiles" }));
    renderMediaTiles(this.mediaEl, this.state.media);
    return this.mediaEl;
  }

  async refreshMedia() {
    try {
      this.state.media = await getJSON("/api/media");
    } catch (e) {
      this.state.media = [];
      if (e.status !== 404) console.warn("media:", String(e));
    }
    if (this.mediaEl && this.mediaEl.isConnected) renderMediaTiles(this.mediaEl, this.state.media);
  }
}

// safeDecode undoes encodeURIComponent; a malformed escape stays as it is.
function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (e) { return s; }
}

function short(key) {
  const s = String(key || "");
  return s.length > 12 ? s.slice(0, 6) + "…" + s.slice(-4) : s;
}

function badge(id, n) {
  const el = document.getElementById(id);
  if (!el) return;
  el.textContent = String(n);
  el.classList.toggle("hidden", n === 0);
}

new App().start();

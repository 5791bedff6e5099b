// node.js: one node's page: its info from the live registry and one-second
// charts of cpu, mem, disk and net fed by the socket's gauges messages.
import { h, clear, fill, fmtNum, fmtAgo } from "./dom.js";
import { LineChart } from "./chart.js";
import { lastSeen } from "./nodes.js";

const pct = (v) => v.toFixed(1) + "%";

export function fmtRate(v) {
  const units = ["B/s", "KB/s", "MB/s", "GB/s"];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return v.toFixed(i === 0 ? 0 : 1) + " " + units[i];
}

// reduceGauges turns one gauges message into the four charts' values:
// cpu busy %, memory used %, the fullest mount's used %, and the summed
// receive and transmit rates of the interfaces other than loopback (of
// loopback when it is the only one).
export function reduceGauges(gauges) {
  const out = { cpu: null, mem: null, disk: null, rx: null, tx: null };
  const rates = { rx: new Map(), tx: new Map() };
  for (const g of Array.isArray(gauges) ? gauges : []) {
    if (!g || typeof g.value !== "number") continue;
    const iface = g.labels && typeof g.labels.iface === "string" ? g.labels.iface : "";
    switch (g.name) {
      case "cpu.busy_pct": out.cpu = g.value; break;
      case "mem.used_pct": out.mem = g.value; break;
      case "disk.used_pct": out.disk = Math.max(out.disk ?? 0, g.value); break;
      case "net.rx_rate": rates.rx.set(iface, g.value); break;
      case "net.tx_rate": rates.tx.set(iface, g.value); break;
    }
  }
  for (const k of ["rx", "tx"]) {
    const m = rates[k];
    if (m.size === 0) continue;
    const ifs = [...m.keys()].filter((i) => i !== "lo");
    out[k] = (ifs.length ? ifs : [...m.keys()]).reduce((s, i) => s + m.get(i), 0);
  }
  return out;
}

export class NodeView {
  constructor(app) { this.app = app; }

  mount(root, chevron) {
    this.root = root;
    this.chevron = chevron;
    this.charts = {
      cpu: new LineChart("cpu", { fmt: pct, max: 100 }),
      mem: new LineChart("mem", { fmt: pct, max: 100 }),
      disk: new LineChart("disk", { fmt: pct, max: 100 }),
      net: new LineChart("net", { fmt: fmtRate, series: ["rx", "tx"] }),
    };
    this.gaugeError = h("p", { class: "error hidden", role: "alert" });
    this.infoBox = h("div", { class: "panel" });
    this.alertsBox = h("div");
    fill(root, 
      h("h1", null, "Node ", h("span", { class: "mono", text: chevron })),
      h("p", null, h("a", { href: `#/run?sel=${encodeURIComponent(chevron)}`, text: "Run a command on this node" })),
      h("h2", { text: "Live (last 60 s)" }),
      this.gaugeError,
      h("div", { class: "charts" }, Object.values(this.charts).map((c) => c.el)),
      h("h2", { text: "Info" }),
      this.infoBox,
      h("h2", { text: "Alerts about this node" }),
      this.alertsBox);
    this.app.live.watch(chevron);
    this.update();
  }

  // update redraws the info and alerts when they changed (and every 5 s
  // for the relative times), not on every socket message.
  update() {
    const n = this.app.state.nodes.find((m) => m.chevron === this.chevron);
    const alerts = this.app.alertsAbout(this.chevron);
    const sig = JSON.stringify([n && { ...n, last_seen: undefined, load: fmtNum(n.load) }, alerts, Math.floor(Date.now() / 5000)]);
    if (sig === this.sig) return;
    this.sig = sig;
    clear(this.infoBox);
    if (!n) {
      this.infoBox.append(h("p", { class: "error", text: `no node ${this.chevron} in the registry` }));
    } else {
      const rows = [
        ["Name", n.name], ["State", n.state], ["Role", n.role || "core"], ["Leader", n.leader ? "yes" : "no"],
        ["Trust tier", String(n.tier ?? "–")], ["Load", fmtNum(n.load)], ["Version", n.version],
        ["OS / arch", [n.os, n.arch].filter(Boolean).join(" / ")], ["Client", n.client],
        ["Capabilities", (n.caps || []).join(", ")],
        ["Tags", Object.entries(n.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
        ["Public key", n.pubkey], ["Server", n.server],
        ["Started", n.started ? `${n.started} (${fmtAgo(n.started)})` : ""], ["Last seen", lastSeen(n)],
      ];
      this.infoBox.append(h("dl", { class: "info" },
        rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { class: k === "Public key" ? "mono" : null, text: v || "–" })])));
    }
    clear(this.alertsBox);
    this.alertsBox.append(alerts.length ? this.app.alertsTable(alerts) : h("p", { class: "empty", text: "none" }));
  }

  gauges(msg) {
    if (msg.chevron !== this.chevron) return;
    if (msg.error) {
      this.gaugeError.textContent = `gauges of ${this.chevron}: ${msg.error}`;
      this.gaugeError.classList.remove("hidden");
      return;
    }
    this.gaugeError.classList.add("hidden");
    const v = reduceGauges(msg.gauges);
    this.charts.cpu.push(v.cpu);
    this.charts.mem.push(v.mem);
    this.charts.disk.push(v.disk);
    this.charts.net.push(v.rx, v.tx);
  }

  unmount() { this.app.live.unwatch(this.chevron); }
}

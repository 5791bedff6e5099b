// nodes.js: the fleet view, nodes grouped by zone → region → swarm (the
// chevron's leading tokens; a flat swarm's one-token chevrons are one group).
import { h, fill, fmtNum, fmtAgo } from "./dom.js";

const LEVELS = ["zone", "region", "swarm"];

// tokens splits a chevron into numbers for sorting ("3.12.7.1" → [3,12,7,1]).
export function tokens(chev) {
  return String(chev).split(".").map((t) => Number(t));
}

export function compareChevrons(a, b) {
  const x = tokens(a), y = tokens(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// groupNodes builds the tree { label, key, children: Map, nodes: [] }.
export function groupNodes(nodes, swarmName) {
  const root = { label: swarmName ? `swarm ${swarmName}` : "swarm", key: "", children: new Map(), nodes: [] };
  for (const n of nodes) {
    const ts = String(n.chevron || "").split(".");
    let g = root;
    for (let i = 0; i < ts.length - 1 && i < LEVELS.length; i++) {
      const key = ts.slice(0, i + 1).join(".");
      if (!g.children.has(key)) g.children.set(key, { label: `${LEVELS[i]} ${key}`, key, children: new Map(), nodes: [] });
      g = g.children.get(key);
    }
    g.nodes.push(n);
  }
  return root;
}

// lastSeen is "live" for a node whose heartbeats arrive (the list itself
// may be seconds old, so its last_seen would understate that), else how long
// ago it was heard.
export function lastSeen(n) {
  if (!n) return "–";
  return n.state === "alive" || n.state === "online" ? "live" : fmtAgo(n.last_seen);
}

function stateCell(s) {
  const st = String(s || "unknown");
  return h("td", { class: `state state-${st.replace(/[^a-z]/g, "")}`, text: st });
}

function alertsCell(list) {
  if (!list || list.length === 0) return h("td", { class: "num", text: "0" });
  const worst = list.some((a) => a.level === "quarantine" || a.level === "disconnect") ? "bad" : "alert";
  const signals = [...new Set(list.map((a) => String(a.signal)))].join(", ");
  return h("td", { class: "num" }, h("a", { href: "#/alerts", class: `badge ${worst}`, title: signals, text: `${list.length} (${signals})` }));
}

// nodeRow is one node's row; rowKey is what it shows but "last seen", so a
// row is rebuilt only when that changed.
function nodeRow(n, alerts) {
  return h("tr", { "data-chevron": n.chevron },
    h("td", null, h("a", { href: `#/node/${encodeURIComponent(n.chevron)}`, text: n.chevron })),
    h("td", { text: n.name }),
    stateCell(n.state),
    h("td", { text: n.role || "core" }),
    h("td", { class: "num", text: fmtNum(n.load) }),
    h("td", { class: "num", text: typeof n.tier === "number" ? String(n.tier) : "–" }),
    h("td", null, n.leader ? h("span", { class: "badge leader", text: "leader" }) : ""),
    alertsCell(alerts),
    h("td", { text: n.version || "" }),
    h("td", { class: "last-seen", text: lastSeen(n) }));
}

function rowKey(n, alerts) {
  return JSON.stringify([n.name, n.state, n.role, fmtNum(n.load), n.tier, n.leader, n.version,
    alerts.map((a) => [a.signal, a.level])]);
}

function nodeTable(nodes, alertsFor, rows) {
  const trs = nodes.sort((a, b) => compareChevrons(a.chevron, b.chevron)).map((n) => {
    const alerts = alertsFor(n.chevron);
    const tr = nodeRow(n, alerts);
    rows.set(n.chevron, { tr, key: rowKey(n, alerts) });
    return tr;
  });
  return h("table", { class: "nodes" },
    h("thead", null, h("tr", null,
      ["Chevron", "Name", "State", "Role", "Load", "Tier", "Leader", "Alerts", "Version", "Last seen"].map((c) =>
        h("th", { scope: "col", class: c === "Load" || c === "Tier" || c === "Alerts" ? "num" : null, text: c })))),
    h("tbody", null, trs));
}

function renderGroup(g, alertsFor, rows, depth) {
  const count = countNodes(g);
  const head = h(depth === 0 ? "h2" : "h3", { text: `${g.label} · ${count} node${count === 1 ? "" : "s"}` });
  const sec = h("section", { class: "group", "data-group": g.key || "root", "aria-label": g.label }, head);
  if (g.nodes.length) sec.append(nodeTable(g.nodes, alertsFor, rows));
  for (const key of [...g.children.keys()].sort(compareChevrons)) sec.append(renderGroup(g.children.get(key), alertsFor, rows, depth + 1));
  return sec;
}

function countNodes(g) {
  let n = g.nodes.length;
  for (const c of g.children.values()) n += countNodes(c);
  return n;
}

// NodesView renders the grouped list. When the set of nodes is the same it
// rebuilds only the rows whose content changed and refreshes "last seen",
// so selection, hover and keyboard focus survive the once-a-second updates
// and 10,000 rows stay cheap.
export class NodesView {
  constructor(app) { this.app = app; }

  mount(root) {
    this.root = root;
    this.shape = undefined;
    this.update();
  }

  update() {
    const { nodes, status } = this.app.state;
    const shape = JSON.stringify([nodes.map((n) => n.chevron), status && status.swarm]);
    if (shape !== this.shape) {
      this.shape = shape;
      this.render();
      return;
    }
    const idx = this.byNode();
    fill(this.summaryEl, this.summary());
    for (const n of nodes) {
      const row = this.rows.get(n.chevron);
      if (!row) continue;
      const alerts = idx.get(n.chevron) || [];
      const key = rowKey(n, alerts);
      if (key !== row.key) {
        const focused = row.tr.contains(document.activeElement);
        const tr = nodeRow(n, alerts);
        row.tr.replaceWith(tr);
        row.tr = tr;
        row.key = key;
        if (focused) tr.querySelector("a").focus();
      } else {
        row.tr.querySelector("td.last-seen").textContent = lastSeen(n);
      }
    }
  }

  // byNode indexes the active alerts by the chevron they are about, once per
  // render rather than once per row.
  byNode() {
    const idx = new Map();
    for (const a of this.app.activeAlerts()) {
      for (const c of new Set([a.chevron, a.peer])) {
        if (!c) continue;
        if (!idx.has(c)) idx.set(c, []);
        idx.get(c).push(a);
      }
    }
    return idx;
  }

  summary() {
    const { nodes, status } = this.app.state;
    const alive = nodes.filter((n) => n.state === "alive" || n.state === "online").length;
    const leader = nodes.find((n) => n.leader);
    return [stat(String(nodes.length), "nodes"), stat(String(alive), "alive"), stat(leader ? leader.chevron : "none", "leader"),
      stat(String(this.app.activeAlerts().length), "alerts"), stat(status ? String(status.swarm || "–") : "–", "swarm")];
  }

  render() {
    const { nodes, status } = this.app.state;
    const focusedChev = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr[data-chevron]");
    const keep = focusedChev ? focusedChev.getAttribute("data-chevron") : null;
    this.rows = new Map();
    this.summaryEl = h("div", { class: "summary" }, this.summary());
    fill(this.root, h("h1", { text: "Nodes" }), this.summaryEl);
    if (nodes.length === 0) {
      this.root.append(h("p", { class: "empty", text: "No nodes yet." }));
    } else {
      const tree = groupNodes(nodes, status && status.swarm);
      if (tree.nodes.length === 0) tree.label = "all nodes"; // several zones, regions or swarms
      const idx = this.byNode();
      this.root.append(renderGroup(tree, (c) => idx.get(c) || [], this.rows, 0));
    }
    this.root.append(this.app.mediaSection());
    if (keep) {
      const link = this.root.querySelector(`tr[data-chevron="${CSS.escape(keep)}"] a`);
      if (link) link.focus();
    }
  }

  unmount() {}
}

function stat(v, label) {
  return h("div", { class: "stat" }, h("b", { text: v }), h("span", { text: label }));
}

// alerts.js: the Alerts page (Sentinel findings, live) and the Approvals
// page (quorum approvals pending; granting one stays in the CLI).
import { h, fill, fmtNum, fmtAgo, fmtWhen, shortKey } from "./dom.js";

export function alertsTable(alerts) {
  return h("table", { class: "alerts" },
    h("thead", null, h("tr", null, ["Peer", "Signal", "Score", "Value", "Baseline", "Level", "Action", "By", "Detail", "When"].map((c) =>
      h("th", { scope: "col", class: ["Score", "Value", "Baseline"].includes(c) ? "num" : null, text: c })))),
    h("tbody", null, alerts.map((a) => h("tr", { "data-peer": a.peer, "data-signal": a.signal },
      h("td", { class: "mono", title: a.peer }, a.chevron ? h("a", { href: `#/node/${encodeURIComponent(a.chevron)}`, text: a.peer }) : shortKey(a.peer)),
      h("td", { text: a.signal }),
      h("td", { class: "num", text: fmtNum(a.score, 1) }),
      h("td", { class: "num", text: fmtNum(a.value, 3) }),
      h("td", { class: "num", text: fmtNum(a.baseline, 3) }),
      h("td", { class: `level-${String(a.level || "").replace(/[^a-z]/g, "")}`, text: a.level }),
      h("td", { text: a.action || "–" }),
      h("td", { class: "mono", text: a.by }),
      h("td", { text: a.detail || "" }),
      h("td", { class: "nowrap", title: a.time, text: fmtAgo(a.time) })))));
}

export class AlertsView {
  constructor(app) { this.app = app; }

  mount(root) {
    this.root = root;
    this.app.refreshAlerts();
    this.update();
  }

  // update re-renders when the alerts changed, and every 5 s for the
  // "when" column; not on every socket message, so a selection survives.
  update() {
    const alerts = this.app.activeAlerts();
    const sig = JSON.stringify([alerts, this.app.state.alertsError, Math.floor(Date.now() / 5000)]);
    if (sig === this.sig) return;
    this.sig = sig;
    fill(this.root, h("h1", { text: "Alerts" }),
      h("p", { class: "hint", text: "Sentinel findings from every live node, newest first; updated live." }),
      this.app.state.alertsError ? h("p", { class: "error", role: "alert", text: this.app.state.alertsError }) : null,
      alerts.length ? alertsTable(alerts) : h("p", { class: "empty", id: "no-alerts", text: "No alerts." }));
  }

  unmount() {}
}

export class ApprovalsView {
  constructor(app) { this.app = app; }

  mount(root) {
    this.root = root;
    this.app.refreshApprovals();
    this.update();
  }

  update() {
    const list = this.app.state.approvals;
    const sig = JSON.stringify([list, this.app.state.approvalsError, Math.floor(Date.now() / 5000)]);
    if (sig === this.sig) return;
    this.sig = sig;
    fill(this.root, h("h1", { text: "Approvals pending" }),
      h("p", { class: "hint", text: "Dangerous commands wait for a quorum of approvers; approve them with robonet approve <id>." }),
      this.app.state.approvalsError ? h("p", { class: "error", role: "alert", text: this.app.state.approvalsError }) : null,
      list.length === 0 ? h("p", { class: "empty", text: "No approvals pending." }) :
        h("table", null,
          h("thead", null, h("tr", null, ["Id", "Verb", "Selector", "Requester", "Approvals", "Created", "Expires"].map((c) => h("th", { scope: "col", text: c })))),
          h("tbody", null, list.map((a) => h("tr", null,
            h("td", { class: "mono", text: a.id }),
            h("td", { text: a.verb }),
            h("td", { class: "mono", text: a.selector }),
            h("td", { class: "mono", title: a.requester, text: a.from || shortKey(a.requester) }),
            h("td", { class: "num", text: `${a.count ?? (a.approvers || []).length} of ${a.need ?? "?"}` }),
            h("td", { title: a.created, text: fmtAgo(a.created) }),
            h("td", { title: a.expires, text: a.expired ? "expired" : fmtWhen(a.expires) }))))));
  }

  unmount() {}
}
